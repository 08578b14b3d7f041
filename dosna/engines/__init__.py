"""Engines: how work on many chunks is executed (see :mod:`dosna.engines.base`)."""
