"""Which backends and engines exist, which are selected, and which can be used.

Backends and engines are registered by name with the import path of their class
and imported on first use, so ``import dosna`` needs nothing but NumPy.

Installed packages add backends and engines through the entry point groups
``dosna.backends`` and ``dosna.engines`` (name = ``"package.module:Class"``);
dosna's own are declared the same way in its ``pyproject.toml``, and also
listed here so that a source checkout finds them without being installed.
A backend's name is also its URL scheme for :func:`dosna.open`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import BackendUnavailableError, UnknownBackendError, UnknownEngineError

__all__ = [
    "available",
    "get_backend_class",
    "get_engine_class",
    "register_backend",
    "register_engine",
    "status",
    "use",
]

log = logging.getLogger(__name__)

_BACKENDS: dict[str, str] = {
    "ram": "dosna.backends.ram:RamBackend",
    "hdf5": "dosna.backends.hdf5:Hdf5Backend",
    "ceph": "dosna.backends.ceph:CephBackend",
    "s3": "dosna.backends.s3:S3Backend",
}
_ENGINES: dict[str, str] = {
    "cpu": "dosna.engines.cpu:CpuEngine",
    "joblib": "dosna.engines.joblib:JoblibEngine",
    "mpi": "dosna.engines.mpi:MpiEngine",
}
_ENGINE_ALIASES = {"jl": "joblib"}
_BUILTIN = {"backend": dict(_BACKENDS), "engine": dict(_ENGINES)}
#: (kind, name) -> the distribution that declared it, for plugins
_PLUGINS: dict[tuple[str, str], str] = {}
_discovered = False
_discover_lock = threading.Lock()
log = logging.getLogger(__name__)


def _discover() -> None:
    """Add the backends and engines installed packages declare as entry points (once)."""
    global _discovered
    if _discovered:
        return
    with _discover_lock:
        if _discovered:
            return
        for kind, table in (("backend", _BACKENDS), ("engine", _ENGINES)):
            for ep in importlib.metadata.entry_points(group=f"dosna.{kind}s"):
                dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
                if ep.name in table:
                    if table[ep.name] != ep.value:
                        log.warning(
                            "ignoring the %s %r declared by %s (%s): the name is taken by %s",
                            kind,
                            ep.name,
                            dist,
                            ep.value,
                            table[ep.name],
                        )
                    continue
                table[ep.name] = ep.value
                _PLUGINS[(kind, ep.name)] = dist
        _discovered = True


@dataclass
class _Selected:
    backend: str = "ram"
    engine: str = "cpu"
    engine_options: dict[str, Any] = field(default_factory=dict)
    #: options given earlier for each engine, kept when it is selected again
    remembered: dict[str, dict[str, Any]] = field(default_factory=dict)


_selected = _Selected()


def register_backend(name: str, target: str | type, *, clobber: bool = False) -> None:
    """Register a backend class (or ``"module:Class"`` path) under ``name``."""
    _register(_BACKENDS, "backend", name, target, clobber)


def register_engine(name: str, target: str | type, *, clobber: bool = False) -> None:
    """Register an engine class (or ``"module:Class"`` path) under ``name``."""
    _register(_ENGINES, "engine", name, target, clobber)


def _register(table: dict, kind: str, name: str, target: Any, clobber: bool) -> None:
    _discover()
    if name in table and not clobber:
        raise ValueError(f"{kind} {name!r} is already registered (pass clobber=True to replace it)")
    table[name] = target


def _load(table: dict, kind: str, name: str, unknown: type[Exception]) -> type:
    _discover()
    if name not in table:
        raise unknown(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    target = table[name]
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    if module_name not in sys.modules:
        log.debug("loading the %s %s from %s", name, kind, target)
    try:
        module = importlib.import_module(module_name)
    except BackendUnavailableError:
        raise
    except ImportError as exc:
        if _BUILTIN[kind].get(name) == target:
            hint = f": pip install 'dosna[{name}]'"
        else:
            origin = _PLUGINS.get((kind, name))
            hint = f": pip install {exc.name}" + (f" (the {kind} comes from {origin})" if origin else "")
        raise BackendUnavailableError(
            f"the {name} {kind} needs the package {exc.name!r}, which is not installed{hint}"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise unknown(f"the {name} {kind} is registered as {target!r}, which does not exist") from None


def get_backend_class(name: str | None = None) -> type:
    """The backend class registered as ``name`` (default: the selected one)."""
    return _load(_BACKENDS, "backend", name or _selected.backend, UnknownBackendError)


def get_engine_class(name: str | None = None) -> type:
    """The engine class registered as ``name`` (default: the selected one)."""
    name = _ENGINE_ALIASES.get(name, name) if name else _selected.engine
    return _load(_ENGINES, "engine", name, UnknownEngineError)


def selected() -> tuple[str, str, dict[str, Any]]:
    """The selected backend name, engine name and engine options."""
    return _selected.backend, _selected.engine, dict(_selected.engine_options)


def use(
    backend: str | None = None,
    engine: str | None = None,
    engine_kw: dict[str, Any] | None = None,
    **engine_options: Any,
) -> None:
    """Select the backend and/or engine used by connections created from now on.

    Parameters
    ----------
    backend : str, optional
        One of the registered backends (``'ram'``, ``'hdf5'``, ...).
    engine : str, optional
        One of the registered engines (``'cpu'``, ...); ``'jl'`` means ``'joblib'``.
    engine_kw : dict, optional
        Options for the engine (as in the original DosNa). They are kept:
        selecting the same engine again later, without options, keeps them;
        new options update them.
    **engine_options
        Options for the engine, e.g. ``njobs=4`` for joblib.

    Raises
    ------
    UnknownBackendError, UnknownEngineError
        For names nobody registered.
    BackendUnavailableError
        If the backend or engine needs a package that is not installed.
    """
    if backend is not None:
        get_backend_class(backend)
        _selected.backend = backend
    if engine is not None:
        engine = _ENGINE_ALIASES.get(engine, engine)
        get_engine_class(engine)
        _selected.engine = engine
        _selected.engine_options = dict(_selected.remembered.get(engine, {}))
    options = {**(engine_kw or {}), **engine_options}
    if options:
        _selected.engine_options = {**_selected.engine_options, **options}
        _selected.remembered[_selected.engine] = dict(_selected.engine_options)


def available() -> dict[str, dict[str, str | None]]:
    """For each registered backend and engine: None if usable, else why not."""
    _discover()
    out: dict[str, dict[str, str | None]] = {"backends": {}, "engines": {}}
    for kind, table, unknown in (
        ("backends", _BACKENDS, UnknownBackendError),
        ("engines", _ENGINES, UnknownEngineError),
    ):
        for name in sorted(table):
            try:
                _load(table, kind[:-1], name, unknown)
                out[kind][name] = None
            except BackendUnavailableError as exc:
                out[kind][name] = str(exc)
            except Exception as exc:  # a plugin that fails to import must not break the listing
                out[kind][name] = f"{type(exc).__name__}: {exc}"
    return out


def status(show: bool = True) -> dict[str, Any]:
    """The selected backend and engine, and which others are usable.

    Parameters
    ----------
    show : bool, default True
        Also print a short report.
    """
    info: dict[str, Any] = {
        "backend": _selected.backend,
        "engine": _selected.engine,
        "engine_options": dict(_selected.engine_options),
        **available(),
    }
    if show:
        print(f"dosna: backend={info['backend']} engine={info['engine']} {info['engine_options'] or ''}")
        for kind in ("backends", "engines"):
            for name, why in info[kind].items():
                print(f"  {kind[:-1]:7} {name:7} {'available' if why is None else 'unavailable: ' + why}")
    return info


def combination_problem(backend: str, engine: str, engine_kw: dict[str, Any] | None = None) -> str | None:
    """Why ``backend`` cannot run with ``engine`` (with ``engine_kw``), or None if it can."""
    from .errors import DosnaError

    try:
        backend_cls = get_backend_class(backend)
        get_engine_class(engine)(**(engine_kw or {})).check_backend(backend_cls)
    except DosnaError as exc:
        return str(exc)
    return None
