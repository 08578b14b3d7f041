"""``dn.status()`` and ``dn.compatible()`` as the original DosNa had them.

``status()`` returns the pair ``(engine, backend)`` of what :func:`dosna.use`
selected: ``engine.name``/``engine.params`` (the options the engine runs with,
defaults included) and ``backend.name``. Which backends and engines can be used
here is :func:`dosna.available` and ``status().report()``; ``status(show=True)``
prints it all.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

from .. import registry

__all__ = ["BackendInfo", "EngineInfo", "Status", "compatible", "status"]


class BackendInfo(NamedTuple):
    """The selected backend, with the original's fields (one facade class serves every backend)."""

    name: str
    Connection: type
    Dataset: type
    DataChunk: type


class EngineInfo(NamedTuple):
    """The selected engine and the options it runs with."""

    name: str
    Connection: type
    Dataset: type
    DataChunk: type
    params: dict[str, Any]


class Status(NamedTuple):
    """``(engine, backend)``, unpacked as in ``engine, backend = dn.status()``."""

    engine: EngineInfo
    backend: BackendInfo

    def report(self) -> dict[str, Any]:
        """Today's full report: the selection, engine options and, per backend and engine,
        None if it can be used here or why not."""
        return registry.status(show=False)


def _engine_params(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus the values the engine picks for the rest of its constructor's parameters."""
    cls = registry.get_engine_class(name)
    params = dict(options)
    engine = cls(**options)
    for name_, parameter in inspect.signature(cls).parameters.items():
        named = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        if named and name_ not in params and hasattr(engine, name_):
            params[name_] = getattr(engine, name_)
    return params


def status(show: bool = False) -> Status:
    """The selected engine and backend.

    Parameters
    ----------
    show : bool, default False
        Also print them, and which backends and engines can be used here.

    Returns
    -------
    Status
        ``(engine, backend)``; ``engine.name``, ``engine.params``, ``backend.name``.

    Examples
    --------
    >>> import dosna as dn
    >>> dn.use(backend='ram', engine='cpu')
    >>> engine, backend = dn.status()
    >>> engine.name, engine.params, backend.name
    ('cpu', {}, 'ram')
    """
    from ..connection import Connection
    from ..dataset import DataChunk, Dataset

    backend_name, engine_name, options = registry.selected()
    result = Status(
        EngineInfo(engine_name, Connection, Dataset, DataChunk, _engine_params(engine_name, options)),
        BackendInfo(backend_name, Connection, Dataset, DataChunk),
    )
    if show:
        registry.status(show=True)
    return result


def compatible(engine: Any, backend: Any) -> bool:
    """Whether ``engine`` (an :class:`EngineInfo` or a name) can run on ``backend`` (info or name).

    Examples
    --------
    >>> import dosna as dn
    >>> dn.compatible('joblib', 'ram'), dn.compatible(dn.status().engine, 'hdf5')
    (True, True)
    """
    engine_name = getattr(engine, "name", engine)
    params = getattr(engine, "params", {})
    return registry.combination_problem(getattr(backend, "name", backend), engine_name, params) is None
