"""A store for model tensors, with versions, states and lineage.

A model version is a set of named tensors (a ``state_dict``) saved under a model
name and an auto-incremented version number. Each tensor is a dosna dataset
(chunked like any other when large); a small manifest records the tensors, the
state of the run that made them (``running``, ``finished``, ``failed``) and its
lineage: the training datasets with a content fingerprint, the rows and rank
shards used, hyper-parameters, metrics, the parent version when fine-tuned and
the dosna version.

Everything lives in the connection's own datasets, so it works on every
backend::

    store = ModelStore(con)
    version = store.save("digits-mlp", {"w": w, "b": b}, lineage={"note": "first try"})
    tensors = store.load("digits-mlp")            # the newest finished version
    store.manifest("digits-mlp", version)["lineage"]

A training run reserves its version first and fills it in at the end::

    with store.begin("digits-mlp", lineage=...) as run:   # state 'running'
        ...train...
        run.finish(learner.state_dict(), metrics={...})   # state 'finished'
    # an exception inside the block marks the version 'failed'

Names in storage: ``models.<model>.v<version>`` holds the manifest (in its
attributes) and ``models.<model>.v<version>.t<i>`` the i-th tensor.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DatasetExistsError, InvalidNameError, ModelNotFoundError, ModelStateError
from .metadata import validate_dtype

if TYPE_CHECKING:
    from .connection import Connection
    from .dataset import Dataset

__all__ = [
    "FINISHED",
    "FAILED",
    "RUNNING",
    "ModelRun",
    "ModelStore",
    "dataset_fingerprint",
    "to_numpy_tensors",
]

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
MANIFEST_FORMAT = "dosna-model"
MANIFEST_VERSION = 1
PREFIX = "models."
_MODEL_NAME = re.compile(r"[A-Za-z0-9_\-]{1,100}")
_MANIFEST_NAME = re.compile(r"models\.([A-Za-z0-9_\-]{1,100})\.v([0-9]+)")
_ALLOCATION_ATTEMPTS = 20


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _validate_model_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidNameError(f"model name must be a str, not {type(name).__name__}")
    if not _MODEL_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid model name {name!r}: use 1 to 100 letters, digits, '_' or '-' (no '.')"
        )
    return name


def _manifest_name(model: str, version: int) -> str:
    return f"{PREFIX}{model}.v{version}"


def to_numpy_tensors(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check and convert a mapping of name → tensor into NumPy arrays.

    Accepts NumPy arrays, anything :func:`numpy.asarray` takes, and torch
    tensors (detached and moved to the CPU). Raises TypeError or ValueError
    for names that are not non-empty strings and for unsupported dtypes, before
    anything is stored.
    """
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name to array, not {type(tensors).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {name!r}")
        if type(value).__module__.split(".")[0] == "torch":
            value = value.detach().cpu()
            try:
                value = value.numpy()
            except TypeError as exc:  # bfloat16 and friends have no NumPy dtype
                raise TypeError(f"tensor {name!r}: {exc}; convert it to float32 first") from exc
        array = np.asarray(value)
        try:
            validate_dtype(array.dtype)
        except TypeError as exc:
            raise TypeError(f"tensor {name!r}: {exc}") from exc
        out[name] = array
    return out


def dataset_fingerprint(dataset: Dataset) -> str:
    """A content fingerprint of a dataset: BLAKE2b over its shape, dtype and values.

    The values are hashed in C order, so the fingerprint does not depend on the
    chunk shape or the backend: the same array stored anywhere gives the same
    fingerprint. The dataset is read one row of chunks at a time.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps({"shape": list(dataset.shape), "dtype": dataset.dtype.str}).encode())
    if not dataset.shape:
        digest.update(np.ascontiguousarray(dataset[()]).tobytes())
    else:
        step = dataset.chunk_size[0]
        for start in range(0, dataset.shape[0], step):
            digest.update(np.ascontiguousarray(dataset[start : start + step]).tobytes())
    return "blake2b-128:" + digest.hexdigest()


class ModelStore:
    """Model versions stored in a dosna connection.

    With the mpi engine every rank makes the same calls (dataset creation is
    collective); saving then needs the same tensors on every rank, as
    data-parallel training gives.

    Parameters
    ----------
    connection : Connection
        Where the models are stored, on any backend.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- looking things up -------------------------------------------------------
    def _all_versions(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for ds_name in self.connection.datasets():
            match = _MANIFEST_NAME.fullmatch(ds_name)
            if match:
                found.setdefault(match.group(1), []).append(int(match.group(2)))
        return {name: sorted(v) for name, v in sorted(found.items())}

    def models(self) -> list[str]:
        """The names of the stored models, sorted."""
        return list(self._all_versions())

    def versions(self, model: str) -> list[int]:
        """The version numbers of ``model`` in every state, ascending.

        Raises :class:`ModelNotFoundError` if the model has no version.
        """
        _validate_model_name(model)
        versions = self._all_versions().get(model)
        if not versions:
            known = ", ".join(self.models()) or "none"
            raise ModelNotFoundError(f"no model {model!r} in {self.connection.name!r} (models: {known})")
        return versions

    def resolve(self, model: str, version: int | str = "latest") -> int:
        """The version number meant by ``version``: an int, or ``'latest'`` (newest finished)."""
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        if version != "latest" and (not isinstance(version, (int, np.integer)) or isinstance(version, bool)):
            raise TypeError(f"version must be an int or 'latest', not {version!r}")
        versions = self.versions(model)
        if version == "latest":
            for candidate in reversed(versions):
                if self._read_manifest(model, candidate)["state"] == FINISHED:
                    return candidate
            raise ModelNotFoundError(f"model {model!r} has no finished version (versions: {versions})")
        if int(version) not in versions:
            raise ModelNotFoundError(f"model {model!r} has no version {version} (versions: {versions})")
        return int(version)

    def manifest(self, model: str, version: int | str = "latest") -> dict[str, Any]:
        """The manifest of one version: tensors, state, lineage, metrics, times."""
        return self._read_manifest(model, self.resolve(model, version))

    def _read_manifest(self, model: str, version: int) -> dict[str, Any]:
        """The manifest of a version known to exist (one metadata read, no listing)."""
        name = _manifest_name(model, version)
        manifest = self.connection.get_dataset(name).attrs.get("manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ModelStateError(f"{name!r} holds no dosna model manifest")
        return manifest

    def history(self, model: str) -> list[dict[str, Any]]:
        """Every version's manifest, oldest first."""
        return [self._read_manifest(model, v) for v in self.versions(model)]

    # -- writing -------------------------------------------------------------------
    def begin(
        self,
        model: str,
        lineage: Mapping[str, Any] | None = None,
        parent: int | None = None,
    ) -> ModelRun:
        """Reserve the next version of ``model`` in state ``running``.

        Parameters
        ----------
        model : str
            1 to 100 letters, digits, ``_`` or ``-``.
        lineage : mapping, optional
            JSON values describing how the version is made (datasets, rows,
            shards, hyper-parameters...).
        parent : int, optional
            The version this one is fine-tuned from; it must exist.
        """
        _validate_model_name(model)
        lineage = json.loads(json.dumps(dict(lineage or {})))  # JSON only, checked before writing
        if parent is not None:
            parent = self.resolve(model, parent)
        engine = self.connection.engine
        for _ in range(_ALLOCATION_ATTEMPTS):
            version = engine.collective(lambda: self._next_version(model))
            manifest = {
                "format": MANIFEST_FORMAT,
                "format_version": MANIFEST_VERSION,
                "model": model,
                "version": version,
                "state": RUNNING,
                "created_at": _now(),
                "updated_at": _now(),
                "finished_at": None,
                "dosna_version": _dosna_version(),
                "parent": parent,
                "tensors": [],
                "lineage": lineage,
                "metrics": {},
                "error": None,
            }
            try:
                self.connection.create_dataset(
                    _manifest_name(model, version), shape=(0,), dtype="u1", attrs={"manifest": manifest}
                )
            except DatasetExistsError:  # another process took this number first
                continue
            return ModelRun(self, model, version)
        raise ModelStateError(f"could not reserve a new version of {model!r}: too many concurrent savers")

    def _next_version(self, model: str) -> int:
        return max(self._all_versions().get(model, [0])) + 1

    def save(
        self,
        model: str,
        tensors: Mapping[str, Any],
        lineage: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        parent: int | None = None,
    ) -> int:
        """Save ``tensors`` as a new finished version of ``model``; return its number."""
        arrays = to_numpy_tensors(tensors)
        with self.begin(model, lineage=lineage, parent=parent) as run:
            run.finish(arrays, metrics=metrics)
        return run.version

    def load(self, model: str, version: int | str = "latest") -> dict[str, np.ndarray]:
        """The tensors of a finished version, bit-exact, in the order they were saved."""
        manifest = self.manifest(model, version)
        if manifest["state"] != FINISHED:
            raise ModelStateError(
                f"model {model!r} version {manifest['version']} is {manifest['state']}, not finished"
                + (f": {manifest['error']}" if manifest.get("error") else "")
            )
        out = {}
        for entry in manifest["tensors"]:
            out[entry["name"]] = self.connection.get_dataset(entry["dataset"])[()]
        return out

    def delete(self, model: str, version: int) -> None:
        """Delete one version (its tensors, then its manifest); other versions stay."""
        version = self.resolve(model, version)
        manifest_name = _manifest_name(model, version)
        prefix = manifest_name + ".t"
        for ds_name in self.connection.datasets():
            if ds_name.startswith(prefix):
                self.connection.del_dataset(ds_name)
        self.connection.del_dataset(manifest_name)


class ModelRun:
    """One reserved model version, filled in by :meth:`finish` or marked :meth:`fail`.

    Used as a context manager, an exception inside the block marks the
    version failed (and is re-raised); leaving the block without finishing
    marks it failed too.
    """

    def __init__(self, store: ModelStore, model: str, version: int) -> None:
        self.store, self.model, self.version = store, model, version
        self.dataset_name = _manifest_name(model, version)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.store._read_manifest(self.model, self.version)

    def _write(
        self,
        metrics: Mapping[str, Any] | None = None,
        lineage: Mapping[str, Any] | None = None,
        **changes: Any,
    ) -> None:
        """One read and one write of the manifest: merge metrics and lineage, set the rest."""
        manifest = self.manifest
        manifest["metrics"].update(json.loads(json.dumps(dict(metrics or {}))))
        manifest["lineage"].update(json.loads(json.dumps(dict(lineage or {}))))
        manifest.update(changes, updated_at=_now())
        self.store.connection.get_dataset(self.dataset_name).attrs["manifest"] = manifest

    def update(self, *, metrics: Mapping[str, Any] | None = None, **lineage: Any) -> None:
        """Record progress: merge ``metrics`` and lineage entries into the manifest."""
        self._write(metrics=metrics, lineage=lineage)

    def finish(self, tensors: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> None:
        """Store the tensors and mark the version finished."""
        arrays = to_numpy_tensors(tensors)
        if self.manifest["state"] != RUNNING:
            raise ModelStateError(f"model {self.model!r} version {self.version} is no longer running")
        con = self.store.connection
        entries = []
        for i, (name, array) in enumerate(arrays.items()):
            ds = con.create_dataset(f"{self.dataset_name}.t{i}", data=array)
            entries.append(
                {
                    "name": name,
                    "dataset": ds.name,
                    "shape": list(array.shape),
                    "dtype": array.dtype.str,
                    "chunk_size": list(ds.chunk_size),
                }
            )
        self._write(metrics=metrics, tensors=entries, state=FINISHED, finished_at=_now())

    def fail(self, error: BaseException | str) -> None:
        """Mark the version failed, with the error's text."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self._write(state=FAILED, error=text, finished_at=_now())

    def __enter__(self) -> ModelRun:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self.fail(exc)
        elif self.manifest["state"] == RUNNING:
            self.fail("the run ended without saving its tensors")


def _dosna_version() -> str:
    from . import __version__

    return __version__
