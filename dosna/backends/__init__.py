"""Backends: where chunks are stored (see :mod:`dosna.backends.base`)."""
