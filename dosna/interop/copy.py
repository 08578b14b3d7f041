"""``dosna.copy(src, dst)``: chunk-streamed copies between dosna, zarr and HDF5 files.

The copy walks the target's chunk grid: every task reads one target chunk's
region from the source and writes it as a whole chunk, so no chunk is ever
read back, tasks never touch the same chunk and only a few chunks are in
memory at once (the ones being copied, and as many more queued as there are
threads times four). Tasks run on the engine's threads, or on its MPI ranks,
each taking a disjoint share of the grid. The target appears only once every
chunk is written.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..engines.base import Engine
from ..errors import DatasetExistsError, DosnaError
from ..io.codecs import CodecSpec
from ..metadata import DatasetMeta
from ..progress import progress_bar
from .endpoints import ArrayInfo, DosnaSource, DosnaTarget, Source, Target, open_source, open_target

__all__ = ["copy"]

ChunkIndex = tuple[int, ...]

#: Threads when neither end is a dosna store that says how many it serves best.
DEFAULT_THREADS = 4


def copy(
    src: Any,
    dst: Any,
    *,
    name: str | None = None,
    chunks: Any = None,
    compression: str | bool | None = False,
    compression_opts: int | None = None,
    shuffle: bool | None = None,
    checksum: bool | None = None,
    overwrite: bool = False,
    engine: Any = None,
    threads: int | None = None,
    progress: bool = True,
) -> str:
    """Copy an array chunk by chunk, keeping dtype, fill value, attributes, dims and codec.

    Parameters
    ----------
    src : str or array
        An endpoint ``LOCATION::PATH`` (a dosna store and dataset name, a
        ``.zarr`` store and array path, an HDF5 file and dataset path: see
        :mod:`dosna.interop.endpoints`), or an array object: a
        :class:`dosna.Dataset`, a zarr array, an h5py dataset or a NumPy array.
    dst : str or Connection
        An endpoint string, or a dosna Connection (the dataset is called
        ``name``, default the source's name). A dosna store without ``::NAME``
        also takes the source's name.
    name : str, optional
        The dataset name in a Connection target.
    chunks : int or tuple of int, optional
        The target's chunk shape; default the source's (its shards for a
        sharded zarr array; about 1 MiB for a contiguous HDF5 dataset).
    compression, compression_opts, shuffle : optional
        The target's compression, as for :meth:`Connection.create_dataset`;
        default (``compression=False``): the source's, mapped to the target's
        nearest counterpart (zstd with shuffle becomes blosc-zstd in zarr).
    checksum : bool, optional
        Whether the target checksums its chunks (crc32c in dosna and zarr,
        fletcher32 in HDF5); default: as the source does.
    overwrite : bool, default False
        Replace an existing target: a zarr array or HDF5 dataset once the copy
        is complete, a dosna dataset before the copy starts. Without it an
        existing target raises DatasetExistsError before anything is written.
    engine : str or Engine, optional
        What runs the chunk tasks; default the dosna end's engine (the
        target's, else the source's), else the sequential engine. With the
        mpi engine every rank must call ``copy``.
    threads : int, optional
        Concurrent chunk tasks per process; default what the dosna end's
        backend serves best, at least 4.
    progress : bool, default True
        Show a progress bar of chunks, on the MPI root only, where
        :func:`dosna.set_progress` allows it (in a terminal by default); with
        tqdm installed.

    Returns
    -------
    str
        A description of the target, ``LOCATION::PATH``.

    Raises
    ------
    DatasetExistsError
        If the target exists and ``overwrite`` is False.
    DatasetNotFoundError
        If the source does not exist.
    """
    source = open_source(src)
    target: Target | None = None
    try:
        default_name = _default_name(source)
        target = open_target(dst, name, default_name)
        info = _target_info(source.info, target, chunks, compression, compression_opts, shuffle, checksum)
        run_on = _engine(engine, source, target)
        if run_on.size > 1 and not target.mpi:
            raise DosnaError(
                f"{target.description} cannot be written by {run_on.size} processes at once; "
                "copy into it from one process (engine cpu or joblib)"
            )
        if run_on.collective(lambda: bool(target.exists())) and not overwrite:
            raise DatasetExistsError(
                f"{target.description} exists: pass overwrite=True (--overwrite) to replace it"
            )
        workers = threads if threads is not None else _threads(source, target)
        if not target.parallel:
            workers = 1
        loop = _chunk_loop(source, run_on, workers, progress, f"copy to {target.description}")
        target.write_all(info, run_on, loop, overwrite)
        return target.description
    finally:
        if target is not None:
            target.close()
        source.close()


def _default_name(source: Source) -> str:
    desc = source.description.rstrip("/")
    tail = desc.rpartition("::")[2] if "::" in desc else desc
    if "://" in tail:
        tail = tail.partition("?")[0]  # a URL's options are not part of its name
    base = tail.replace("\\", "/").rstrip("/").rpartition("/")[2]
    for suffix in (".zarr", ".h5", ".hdf5"):
        base = base.removesuffix(suffix)
    return base if base and not base.startswith(("<", ".")) else "data"


def _target_info(
    info: ArrayInfo,
    target: Target,
    chunks: Any,
    compression: str | bool | None,
    compression_opts: int | None,
    shuffle: bool | None,
    checksum: bool | None,
) -> ArrayInfo:
    if chunks is not None:
        chunks = DatasetMeta.create("copy", info.shape, info.dtype, info.fillvalue, chunks).chunk_size
        info = replace(info, chunks=chunks)
    else:
        info = replace(info, chunks=target.chunks_for(info))
    codec = info.codec
    if compression is not False:
        codec = CodecSpec.create(
            compression or None,  # type: ignore[arg-type]
            compression_opts,
            shuffle,
            checksum if checksum is not None else (codec.checksum if codec else True),
        )
    elif checksum is not None:
        codec = replace(codec if codec is not None else CodecSpec.create(), checksum=checksum)
    return replace(info, codec=codec)


def _engine(engine: Any, source: Source, target: Target) -> Any:
    if isinstance(engine, Engine):
        chosen = engine
    elif engine is not None:
        from .. import registry

        chosen = registry.get_engine_class(engine)()
    elif isinstance(target, DosnaTarget):
        chosen = target.con.engine
    elif isinstance(source, DosnaSource):
        chosen = source.engine
    else:
        chosen = Engine()
    # copy tasks hold open files and arrays: they run on threads (or ranks), never in worker processes
    return chosen if chosen.shares_memory or chosen.size > 1 else Engine()


def _threads(source: Source, target: Target) -> int:
    hinted = [getattr(end, "threads", 0) for end in (source, target)]
    return max(DEFAULT_THREADS, *hinted)


def _chunk_loop(
    source: Source, engine: Any, threads: int, show: bool, desc: str
) -> Callable[[DatasetMeta, Callable[[ChunkIndex, np.ndarray], None]], None]:
    """The loop a target runs: every chunk of its grid read from ``source`` and written."""

    def loop(geometry: DatasetMeta, write: Callable[[ChunkIndex, np.ndarray], None]) -> None:
        everything = list(itertools.product(*(range(g) for g in geometry.chunk_grid)))
        mine = engine.share(everything)
        bar = progress_bar(show and engine.is_root, len(mine), desc, unit="chunk")
        lock = threading.Lock()

        def done() -> None:
            with lock:
                bar.update(1)

        fill = geometry.fillvalue

        def put(idx: ChunkIndex, block: np.ndarray) -> None:
            if not _all_fill(block, fill):  # a chunk of the fill value stays unwritten, as in the source
                write(idx, block)
            done()

        try:
            if source.parallel:

                def copy_one(idx: ChunkIndex) -> None:
                    put(idx, source.read(geometry.chunk_region(idx)))

                engine.run_and_agree(copy_one, mine, threads)
            else:
                # the source is read in this thread (items are pulled as workers free up)
                def write_one(item: tuple[ChunkIndex, np.ndarray]) -> None:
                    put(*item)

                work = ((idx, source.read(geometry.chunk_region(idx))) for idx in mine)
                engine.run_and_agree(write_one, work, threads)
        finally:
            bar.close()

    return loop


def _all_fill(block: np.ndarray, fill: Any) -> bool:
    """Whether every element of ``block`` is the fill value (NaN counts as equal to a NaN fill)."""
    if block.size == 0:
        return True
    first = block.flat[0]
    if not (first == fill or (first != first and fill != fill)):  # the usual case: decided at once
        return False
    if fill != fill:
        return bool(np.isnan(block).all())
    return bool((block == fill).all())
