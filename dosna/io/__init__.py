"""Chunk I/O: how chunks are encoded, read, written and combined into array operations."""
