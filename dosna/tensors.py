"""A store for model tensors, with versions, states, lineage and training checkpoints.

A model version is a set of named tensors (a ``state_dict``) saved under a model
name and an auto-incremented version number. Each tensor is a dosna dataset
(chunked like any other when large); a small manifest records the tensors, the
state of the run that made them (``running``, ``finished``, ``failed``) and its
lineage: the training datasets with a content fingerprint, the rows and rank
shards used, hyper-parameters, metrics, the parent version when fine-tuned and
the dosna version. A running version may also hold a *checkpoint*: arrays and
JSON values from which an interrupted training run continues.

Everything lives in the connection's own datasets, so it works on every
backend::

    store = ModelStore(con)
    version = store.save("digits-mlp", {"w": w, "b": b}, lineage={"note": "first try"})
    tensors = store.load("digits-mlp")            # the newest finished version
    store.manifest("digits-mlp", version)["lineage"]

A training run reserves its version first and fills it in at the end::

    with store.begin("digits-mlp", lineage=...) as run:   # state 'running'
        ...train...
        run.checkpoint(epoch, arrays, values)              # optional, replaces the last one
        run.finish(learner.state_dict(), metrics={...})   # state 'finished'
    # an exception inside the block marks the version 'failed'

Names in storage and ownership
------------------------------
``models.<model>.v<version>`` holds the manifest (in its attributes),
``models.<model>.v<version>.t<i>`` the i-th tensor and
``models.<model>.v<version>.c<epoch>-<i>`` the i-th array of a checkpoint.
Names starting with ``models.`` are the store's namespace: users cannot create
datasets there (:mod:`dosna.namespaces`). A store may still hold such datasets
that the model store did not write (made before the namespace was reserved, or
by other programs, or edited since), so a name alone proves nothing. The store
therefore trusts only what it can check:

- a manifest is used only when it validates completely (every key, type and
  range) and names its own model and version; others are skipped with a
  warning when listing, and raise :class:`ModelCorruptError` when asked for;
- every dataset the store writes carries the attribute ``dosna_model``
  (``{"model", "version", "run", "role", "name"}``, ``run`` being the
  version's random ``run_id``), and a tensor is read only when its dataset has
  the name the store gives it, that marker, and the recorded shape and dtype;
- the store deletes only datasets its manifest lists *and* that carry its
  marker, never by name prefix, and it never writes over a dataset that lacks
  its marker (:class:`ModelStateError`). A marked dataset no manifest lists is
  an orphan of a killed writer and is replaced when its name is needed again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import (
    DatasetExistsError,
    DatasetNotFoundError,
    DosnaError,
    InvalidNameError,
    InvalidOptionError,
    ModelNotFoundError,
    ModelStateError,
)
from .extras import require
from .indexing import _is_tensor, as_numpy
from .metadata import validate_dtype
from .namespaces import owned_by

if TYPE_CHECKING:
    from .connection import Connection
    from .dataset import Dataset

__all__ = [
    "FINISHED",
    "FAILED",
    "MARKER",
    "RUNNING",
    "ModelCorruptError",
    "ModelRun",
    "ModelStore",
    "dataset_fingerprint",
    "export_npz",
    "logical_dtypes",
    "stored_tensors",
    "to_torch",
    "to_numpy_tensors",
    "validate_manifest",
    "validate_model_name",
]

log = logging.getLogger(__name__)

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
STATES = (RUNNING, FINISHED, FAILED)
MANIFEST_FORMAT = "dosna-model"
MANIFEST_VERSION = 2
PREFIX = "models."
MARKER = "dosna_model"  # attribute carried by every dataset the store writes
_MODEL_NAME = re.compile(r"[A-Za-z0-9_\-]{1,100}")
_MANIFEST_NAME = re.compile(r"models\.([A-Za-z0-9_\-]{1,100})\.v([1-9][0-9]{0,17})")
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_MAX_NDIM = 32
_ALLOCATION_ATTEMPTS = 20
_MANIFEST_KEYS = frozenset(
    {
        "format",
        "format_version",
        "model",
        "version",
        "run_id",
        "state",
        "created_at",
        "updated_at",
        "finished_at",
        "dosna_version",
        "parent",
        "tensors",
        "checkpoint",
        "stale",
        "lineage",
        "metrics",
        "error",
    }
)
_ENTRY_KEYS = frozenset({"name", "dataset", "shape", "dtype", "chunk_size"})
#: optional entry key: the tensor's own dtype where NumPy has none (stored as its bit pattern)
LOGICAL_DTYPES = {"bfloat16": "<u2"}
FORMATS = ("numpy", "torch")
_CHECKPOINT_KEYS = frozenset({"epoch", "tensors", "values"})


class ModelCorruptError(DosnaError, ValueError):
    """A model manifest, or a dataset it points at, is not what the store wrote.

    Parameters
    ----------
    where : str
        The manifest: ``'<connection>:<manifest dataset>'``.
    location : str
        The part that is wrong, e.g. ``manifest['tensors'][0]['shape']``.
    reason : str
        What is wrong with it.
    """

    def __init__(self, where: str, location: str, reason: str) -> None:
        self.where, self.location, self.reason = where, location, reason
        super().__init__(f"model manifest {where} is corrupt at {location}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.where, self.location, self.reason))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def validate_model_name(name: object) -> str:
    """``name`` if it is a valid model name, else raise InvalidNameError."""
    if not isinstance(name, str):
        raise InvalidNameError(f"model name must be a str, not {type(name).__name__}")
    if not _MODEL_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid model name {name!r}: use 1 to 100 letters, digits, '_' or '-' (no '.')"
        )
    return name


def _manifest_name(model: str, version: int) -> str:
    return f"{PREFIX}{model}.v{version}"


def _tensor_dataset(model: str, version: int, index: int) -> str:
    return f"{_manifest_name(model, version)}.t{index}"


def _checkpoint_dataset(model: str, version: int, epoch: int, index: int) -> str:
    return f"{_manifest_name(model, version)}.c{epoch}-{index}"


def _owned_name(model: str, version: int) -> re.Pattern[str]:
    """The names of the datasets (other than the manifest) a version may own."""
    return re.compile(re.escape(_manifest_name(model, version)) + r"\.(t[0-9]+|c[0-9]+-[0-9]+)")


def _referenced(manifest: Mapping[str, Any]) -> list[str]:
    """The datasets a manifest points at: its tensors and its checkpoint's arrays."""
    cp = manifest["checkpoint"]
    entries = manifest["tensors"] + ([] if cp is None else cp["tensors"])
    return [e["dataset"] for e in entries]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


# -- manifest validation -----------------------------------------------------------


class _Checker:
    """Raises ModelCorruptError naming the manifest and the location of the problem."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, location: str, reason: str) -> None:
        raise ModelCorruptError(self.where, location, reason)

    def keys(
        self, doc: object, required: frozenset[str], location: str, optional: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        if not isinstance(doc, dict):
            self.fail(location, f"expected an object, got {_kind(doc)}")
        assert isinstance(doc, dict)
        missing, extra = sorted(required - set(doc)), sorted(set(doc) - required - optional)
        if missing:
            self.fail(location, f"missing key(s) {', '.join(map(repr, missing))}")
        if extra:
            self.fail(location, f"unknown key(s) {', '.join(map(repr, extra))}")
        return doc

    def of_type(
        self, value: object, types: tuple[type, ...], location: str, allow_none: bool = False
    ) -> None:
        if value is None and allow_none:
            return
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types) + (" or null" if allow_none else "")
            self.fail(location, f"expected {names}, got {_kind(value)}")

    def int_in(self, value: object, low: int, high: int | None, location: str) -> int:
        if not _is_int(value):
            self.fail(location, f"expected an int, got {_kind(value)}")
        assert isinstance(value, int)
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            self.fail(location, f"{value} is out of range ({bound})")
        return value

    def equal(self, value: object, expected: object, location: str) -> None:
        if value != expected or type(value) is not type(expected):
            self.fail(location, f"expected {expected!r}, got {value!r}")

    def entry(self, doc: object, dataset: str, location: str) -> dict[str, Any]:
        entry = self.keys(doc, _ENTRY_KEYS, location, optional=frozenset({"logical_dtype"}))
        name = entry["name"]
        if not isinstance(name, str) or not name:
            self.fail(f"{location}['name']", f"expected a non-empty str, got {name!r}")
        self.equal(entry["dataset"], dataset, f"{location}['dataset']")
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) > _MAX_NDIM:
            self.fail(f"{location}['shape']", f"expected a list of at most {_MAX_NDIM} ints, got {shape!r}")
        for i, extent in enumerate(shape):
            self.int_in(extent, 0, None, f"{location}['shape'][{i}]")
        chunks = entry["chunk_size"]
        if not isinstance(chunks, list) or len(chunks) != len(shape):
            self.fail(f"{location}['chunk_size']", f"expected a list of {len(shape)} ints, got {chunks!r}")
        for i, extent in enumerate(chunks):
            self.int_in(extent, 1, None, f"{location}['chunk_size'][{i}]")
        dtype = entry["dtype"]
        try:
            if not isinstance(dtype, str) or np.dtype(dtype).str != dtype:
                raise TypeError(f"not a canonical dtype string: {dtype!r}")
            validate_dtype(np.dtype(dtype))
        except (TypeError, ValueError) as exc:
            self.fail(f"{location}['dtype']", str(exc))
        if "logical_dtype" in entry and LOGICAL_DTYPES.get(entry["logical_dtype"]) != dtype:
            self.fail(
                f"{location}['logical_dtype']",
                f"{entry['logical_dtype']!r} is not a logical dtype stored as {dtype!r}",
            )
        return entry

    def tensor_list(self, value: object, dataset_of: Any, location: str) -> None:
        if not isinstance(value, list):
            self.fail(location, f"expected a list, got {_kind(value)}")
        assert isinstance(value, list)
        seen: set[str] = set()
        for i, doc in enumerate(value):
            entry = self.entry(doc, dataset_of(i), f"{location}[{i}]")
            if entry["name"] in seen:
                self.fail(f"{location}[{i}]['name']", f"tensor name {entry['name']!r} appears twice")
            seen.add(entry["name"])


def validate_manifest(doc: object, model: str, version: int, where: str) -> dict[str, Any]:
    """Check a manifest completely; return it, or raise :class:`ModelCorruptError`.

    Parameters
    ----------
    doc : object
        The decoded manifest.
    model, version
        Whose manifest it must be (from the name of the dataset holding it).
    where : str
        How to name the manifest in errors.
    """
    check = _Checker(where)
    m = check.keys(doc, _MANIFEST_KEYS, "manifest")
    check.equal(m["format"], MANIFEST_FORMAT, "manifest['format']")
    check.equal(m["format_version"], MANIFEST_VERSION, "manifest['format_version']")
    check.equal(m["model"], model, "manifest['model']")
    check.equal(m["version"], version, "manifest['version']")
    if not isinstance(m["run_id"], str) or not _RUN_ID.fullmatch(m["run_id"]):
        check.fail("manifest['run_id']", f"expected 32 hexadecimal digits, got {m['run_id']!r}")
    if m["state"] not in STATES:
        check.fail("manifest['state']", f"expected one of {', '.join(STATES)}, got {m['state']!r}")
    for key in ("created_at", "updated_at", "dosna_version"):
        check.of_type(m[key], (str,), f"manifest[{key!r}]")
    for key in ("finished_at", "error"):
        check.of_type(m[key], (str,), f"manifest[{key!r}]", allow_none=True)
    if m["parent"] is not None:
        check.int_in(m["parent"], 1, version - 1, "manifest['parent']")
    for key in ("lineage", "metrics"):
        check.of_type(m[key], (dict,), f"manifest[{key!r}]")
    check.tensor_list(m["tensors"], lambda i: _tensor_dataset(model, version, i), "manifest['tensors']")
    if m["checkpoint"] is not None:
        cp = check.keys(m["checkpoint"], _CHECKPOINT_KEYS, "manifest['checkpoint']")
        epoch = check.int_in(cp["epoch"], 1, None, "manifest['checkpoint']['epoch']")
        check.tensor_list(
            cp["tensors"],
            lambda i: _checkpoint_dataset(model, version, epoch, i),
            "manifest['checkpoint']['tensors']",
        )
        check.of_type(cp["values"], (dict,), "manifest['checkpoint']['values']")
    if not isinstance(m["stale"], list):
        check.fail("manifest['stale']", f"expected a list, got {_kind(m['stale'])}")
    owned = _owned_name(model, version)
    for i, name in enumerate(m["stale"]):
        if not isinstance(name, str) or not owned.fullmatch(name):
            check.fail(f"manifest['stale'][{i}]", f"{name!r} is not a dataset name of this version")
    return m


# -- tensors in and out ------------------------------------------------------------


def to_numpy_tensors(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check and convert a mapping of name → tensor into NumPy arrays.

    Accepts NumPy arrays, anything :func:`numpy.asarray` takes, and torch
    tensors (detached and moved to the CPU, then converted as
    :func:`dosna.indexing.as_numpy` does). Raises TypeError or ValueError for
    names that are not non-empty strings and for unsupported dtypes (bfloat16
    included: see :func:`stored_tensors`), before anything is stored.
    """
    return stored_tensors(tensors, bfloat16=False)[0]


def stored_tensors(
    tensors: Mapping[str, Any], bfloat16: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors as the arrays the store writes, and the logical dtype of those that differ.

    Like :func:`to_numpy_tensors`, but a torch ``bfloat16`` tensor, which has
    no NumPy dtype, becomes its raw 16-bit pattern (``uint16``) with logical
    dtype ``'bfloat16'``. With ``bfloat16=False`` such tensors are refused.
    """
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name to array, not {type(tensors).__name__}")
    out: dict[str, np.ndarray] = {}
    logical: dict[str, str] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"tensor names must be non-empty strings, got {name!r}")
        if _is_tensor(value):
            value = value.detach().cpu()  # the store moves tensors to the CPU
            if bfloat16 and str(value.dtype) == "torch.bfloat16":
                import torch  # loaded already: value is one of its tensors

                value = as_numpy(value.contiguous().view(torch.int16)).view(np.uint16)
                logical[name] = "bfloat16"
            else:
                try:
                    value = as_numpy(value)
                except TypeError as exc:
                    raise TypeError(f"tensor {name!r}: {exc}") from exc
        elif not isinstance(value, (np.ndarray, np.generic, int, float, complex, bool, list, tuple)):
            raise TypeError(
                f"tensor {name!r}: a {type(value).__name__} is not a tensor or array "
                "(the store takes a state_dict of tensors: nested dicts such as optimizer state are not stored)"
            )
        array = np.asarray(value)
        try:
            validate_dtype(array.dtype)
        except TypeError as exc:
            raise TypeError(f"tensor {name!r}: {exc}") from exc
        out[name] = array
    return out, logical


def logical_dtypes(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Tensor name → logical dtype, for the tensors of a version's manifest stored as bit patterns."""
    return {e["name"]: e["logical_dtype"] for e in manifest["tensors"] if "logical_dtype" in e}


def to_torch(array: np.ndarray, logical: str | None) -> Any:
    """A stored array as a torch tensor of its own dtype (a copy: tensors are writable)."""
    import torch

    tensor = torch.from_numpy(np.array(array, copy=True))
    if logical == "bfloat16":
        tensor = tensor.view(torch.int16).view(torch.bfloat16)
    return tensor


def export_npz(
    path: str | os.PathLike[str], tensors: Mapping[str, Any], extra: Mapping[str, str] | None = None
) -> str:
    """Write tensors to a ``.npz`` file that :func:`numpy.load` reads back, without pickle.

    Any tensor name works, including ``file`` (which :func:`numpy.savez`
    takes as its own argument). The file appears complete or not at all: it
    is written next to its destination and renamed into place.

    Parameters
    ----------
    path : str or path-like
        Destination; ``.npz`` is appended when missing, as NumPy does.
    tensors : mapping of str to array
        The arrays, e.g. what :meth:`ModelStore.load` returns.
    extra : mapping of str to str, optional
        Text members to add, by member name (e.g. a JSON document).

    Returns
    -------
    str
        The path written.
    """
    arrays = to_numpy_tensors(tensors)
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".export-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, array in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
            for member_name, text in (extra or {}).items():
                zf.writestr(member_name, text.encode())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


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


# -- the store ---------------------------------------------------------------------


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
        self._warned: set[str] = set()

    def _where(self, model: str, version: int) -> str:
        return f"{self.connection.name}:{_manifest_name(model, version)}"

    # -- looking things up -------------------------------------------------------
    def _candidates(self) -> dict[str, list[int]]:
        """Version numbers by model, from dataset names alone (nothing is validated)."""
        found: dict[str, list[int]] = {}
        for ds_name in self.connection.datasets():
            match = _MANIFEST_NAME.fullmatch(ds_name)
            if match:
                found.setdefault(match.group(1), []).append(int(match.group(2)))
        return {name: sorted(v) for name, v in sorted(found.items())}

    def _valid_manifest(self, model: str, version: int) -> dict[str, Any] | None:
        """The manifest if it validates; None (logged once) otherwise."""
        try:
            return self._read_manifest(model, version)
        except (DatasetNotFoundError, ModelNotFoundError):
            return None  # deleted since the listing
        except DosnaError as exc:
            name = _manifest_name(model, version)
            if name not in self._warned:
                self._warned.add(name)
                log.warning("ignoring dataset %r: not a valid model manifest (%s)", name, exc)
            return None

    def _valid_versions(self, model: str, candidates: list[int]) -> list[int]:
        return [v for v in candidates if self._valid_manifest(model, v) is not None]

    def models(self) -> list[str]:
        """The names of the stored models (with at least one valid manifest), sorted."""
        return [
            m
            for m, versions in self._candidates().items()
            if any(self._valid_manifest(m, v) is not None for v in versions)
        ]

    def versions(self, model: str) -> list[int]:
        """The version numbers of ``model`` in every state, ascending.

        Datasets named like manifests that do not hold a valid one are skipped
        (with a warning). Raises :class:`ModelNotFoundError` if the model has
        no version.
        """
        validate_model_name(model)
        versions = self._valid_versions(model, self._candidates().get(model, []))
        if not versions:
            known = ", ".join(self.models()) or "none"
            raise ModelNotFoundError(f"no model {model!r} in {self.connection.name!r} (models: {known})")
        return versions

    def resolve(self, model: str, version: int | str = "latest") -> int:
        """The version number meant by ``version``: an int, or ``'latest'`` (newest finished).

        An explicit version is looked up directly; its manifest must be valid
        (else :class:`ModelCorruptError`).
        """
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        if version != "latest" and (not isinstance(version, (int, np.integer)) or isinstance(version, bool)):
            raise TypeError(f"version must be an int or 'latest', not {version!r}")
        validate_model_name(model)
        if version == "latest":
            candidates = self._candidates().get(model, [])
            for candidate in reversed(candidates):
                manifest = self._valid_manifest(model, candidate)
                if manifest is not None and manifest["state"] == FINISHED:
                    return candidate
            versions = self.versions(model)  # raises if there is none at all
            raise ModelNotFoundError(f"model {model!r} has no finished version (versions: {versions})")
        number = int(version)
        if number >= 1 and self.connection.has_dataset(_manifest_name(model, number)):
            self._read_manifest(model, number)  # a corrupt one is an error when asked for
            return number
        raise ModelNotFoundError(
            f"model {model!r} has no version {number} (versions: {self.versions(model)})"
        )

    def manifest(self, model: str, version: int | str = "latest") -> dict[str, Any]:
        """The manifest of one version: tensors, state, lineage, metrics, times."""
        return self._read_manifest(model, self.resolve(model, version))

    def _read_manifest(self, model: str, version: int) -> dict[str, Any]:
        """The validated manifest of a version known to exist (one metadata read, no listing)."""
        ds = self.connection.get_dataset(_manifest_name(model, version))
        where = self._where(model, version)
        attrs = ds.attrs
        if "manifest" not in attrs:
            raise ModelCorruptError(where, "attrs['manifest']", "the dataset holds no model manifest")
        return validate_manifest(attrs["manifest"], model, version, where)

    def history(self, model: str) -> list[dict[str, Any]]:
        """Every valid version's manifest, oldest first (:class:`ModelNotFoundError` if none)."""
        validate_model_name(model)
        found = []
        for v in self._candidates().get(model, []):
            manifest = self._valid_manifest(model, v)
            if manifest is not None:
                found.append(manifest)
        if not found:
            self.versions(model)  # raises, naming the models there are
        return found

    def latest_unfinished(self, model: str) -> dict[str, Any] | None:
        """The manifest of the newest version of ``model`` if it is running or failed, else None.

        This is what a training run resumes. None when the model has no valid
        version or its newest one is finished.
        """
        validate_model_name(model)
        for candidate in reversed(self._candidates().get(model, [])):
            manifest = self._valid_manifest(model, candidate)
            if manifest is not None:
                return None if manifest["state"] == FINISHED else manifest
        return None

    # -- owned datasets --------------------------------------------------------------
    def _marker(self, manifest: Mapping[str, Any], role: str, name: str) -> dict[str, Any]:
        return {
            "model": manifest["model"],
            "version": manifest["version"],
            "run": manifest["run_id"],
            "role": role,
            "name": name,
        }

    def _open_owned(self, dataset: str, model: str, version: int) -> Dataset | None:
        """The dataset if it carries this version's marker (of any run), None if missing.

        Raises ModelStateError when the name is taken by a dataset the store did not write.
        """
        try:
            ds = self.connection.get_dataset(dataset)
        except DatasetNotFoundError:
            return None
        marker = ds.attrs.get(MARKER)
        if not isinstance(marker, dict) or marker.get("model") != model or marker.get("version") != version:
            raise ModelStateError(
                f"dataset {dataset!r} exists but was not written by the model store for {model!r} "
                f"version {version}; the store never writes over or deletes it (rename or delete it yourself)"
            )
        return ds

    def _delete_owned(self, names: list[str], model: str, version: int) -> None:
        """Delete the listed datasets that carry this version's marker; skip (and log) others."""
        for name in names:
            try:
                if self._open_owned(name, model, version) is not None:
                    self.connection.del_dataset(name)
            except ModelStateError as exc:
                log.warning("not deleting %r: %s", name, exc)
            except DatasetNotFoundError:  # gone meanwhile
                pass

    def _write_arrays(
        self,
        manifest: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        role: str,
        dataset_of: Any,
        logical: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Store arrays as marked datasets; return their manifest entries.

        Every name is checked before anything is written: a name held by a
        dataset the store did not write is refused; one held by a marked
        orphan (a killed writer's) is deleted first.
        """
        model, version = manifest["model"], manifest["version"]
        names = [dataset_of(i) for i in range(len(arrays))]
        in_use = set(_referenced(manifest))
        if in_use.intersection(names):
            raise ModelStateError(
                f"model {model!r} version {version} already holds {sorted(in_use & set(names))}"
            )
        orphans = [n for n in names if self._open_owned(n, model, version) is not None]
        for name in orphans:
            self.connection.del_dataset(name)
        entries = []
        for dataset, (name, array) in zip(names, arrays.items()):
            with owned_by(PREFIX):
                ds = self.connection.create_dataset(
                    dataset, data=array, attrs={MARKER: self._marker(manifest, role, name)}
                )
            entries.append(
                {
                    "name": name,
                    "dataset": ds.name,
                    "shape": list(array.shape),
                    "dtype": array.dtype.str,
                    "chunk_size": list(ds.chunk_size),
                    **({"logical_dtype": logical[name]} if logical and name in logical else {}),
                }
            )
        return entries

    def _read_arrays(
        self, manifest: Mapping[str, Any], entries: list[dict[str, Any]], role: str, at: str
    ) -> dict[str, np.ndarray]:
        """Read the datasets of manifest entries, checking each is the store's own and as recorded."""
        model, version = manifest["model"], manifest["version"]
        where = self._where(model, version)
        out = {}
        for i, entry in enumerate(entries):
            location = f"{at}[{i}]"
            try:
                ds = self.connection.get_dataset(entry["dataset"])
            except DatasetNotFoundError:
                raise ModelCorruptError(where, location, f"dataset {entry['dataset']!r} is missing") from None
            if ds.attrs.get(MARKER) != self._marker(manifest, role, entry["name"]):
                raise ModelCorruptError(
                    where,
                    location,
                    f"dataset {entry['dataset']!r} was not written by this version of the model",
                )
            if list(ds.shape) != entry["shape"] or ds.dtype.str != entry["dtype"]:
                raise ModelCorruptError(
                    where,
                    location,
                    f"dataset {entry['dataset']!r} holds {ds.dtype.str} {list(ds.shape)}, "
                    f"the manifest records {entry['dtype']} {entry['shape']}",
                )
            out[entry["name"]] = ds[()]
        return out

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
        validate_model_name(model)
        lineage = json.loads(json.dumps(dict(lineage or {})))  # JSON only, checked before writing
        if parent is not None:
            parent = self.resolve(model, parent)
        engine = self.connection.engine
        for _ in range(_ALLOCATION_ATTEMPTS):
            # Any dataset with a manifest's name takes its number, valid or not.
            reserved: list[Any] = engine.collective(
                lambda: [max(self._candidates().get(model, [0])) + 1, secrets.token_hex(16)]
            )
            version, run_id = int(reserved[0]), str(reserved[1])
            manifest: dict[str, Any] = {
                "format": MANIFEST_FORMAT,
                "format_version": MANIFEST_VERSION,
                "model": model,
                "version": version,
                "run_id": run_id,
                "state": RUNNING,
                "created_at": _now(),
                "updated_at": _now(),
                "finished_at": None,
                "dosna_version": _dosna_version(),
                "parent": parent,
                "tensors": [],
                "checkpoint": None,
                "stale": [],
                "lineage": lineage,
                "metrics": {},
                "error": None,
            }
            validate_manifest(manifest, model, version, self._where(model, version))
            try:
                with owned_by(PREFIX):
                    self.connection.create_dataset(
                        _manifest_name(model, version), shape=(0,), dtype="u1", attrs={"manifest": manifest}
                    )
            except DatasetExistsError:  # another process took this number first
                continue
            return ModelRun(self, model, version)
        raise ModelStateError(f"could not reserve a new version of {model!r}: too many concurrent savers")

    def reopen(self, model: str, version: int, lineage: Mapping[str, Any] | None = None) -> ModelRun:
        """Set an unfinished (running or failed) version running again, to continue it.

        Datasets left behind by a writer killed while replacing its checkpoint
        are deleted; ``lineage`` entries are merged in. Raises
        :class:`ModelStateError` for a finished version.
        """
        manifest = self._read_manifest(model, self.resolve(model, version))
        if manifest["state"] == FINISHED:
            raise ModelStateError(
                f"model {model!r} version {manifest['version']} is finished; it cannot continue"
            )
        run = ModelRun(self, model, manifest["version"])
        self._delete_owned(manifest["stale"], model, manifest["version"])
        run._write(lineage=lineage, state=RUNNING, error=None, finished_at=None, stale=[])
        return run

    def save(
        self,
        model: str,
        tensors: Mapping[str, Any],
        lineage: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        parent: int | None = None,
    ) -> int:
        """Save ``tensors`` as a new finished version of ``model``; return its number.

        ``tensors`` maps names to arrays or torch tensors, e.g. a module's
        ``state_dict()``. Torch tensors are moved to the CPU; ``bfloat16``
        ones are stored as their 16-bit patterns and come back as bfloat16 from
        ``load(..., format="torch")``. Values that are not arrays or tensors
        (nested dicts, strings, None) raise TypeError before anything is written.
        """
        arrays, logical = stored_tensors(tensors)
        return self._save_stored(model, arrays, logical, lineage, metrics, parent)

    def _save_stored(
        self,
        model: str,
        arrays: Mapping[str, np.ndarray],
        logical: Mapping[str, str],
        lineage: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        parent: int | None = None,
    ) -> int:
        """:meth:`save` of arrays already checked and converted by :func:`stored_tensors`."""
        with self.begin(model, lineage=lineage, parent=parent) as run:
            run._finish(arrays, logical, metrics)
        return run.version

    def load(self, model: str, version: int | str = "latest", format: str = "numpy") -> dict[str, Any]:
        """The tensors of a finished version, bit-exact, in the order they were saved.

        Parameters
        ----------
        model, version
            Which version (``'latest'``: the newest finished one).
        format : {"numpy", "torch"}
            ``"numpy"``: NumPy arrays (a bfloat16 tensor raises TypeError: NumPy
            has no such dtype). ``"torch"``: CPU torch tensors of the saved
            dtypes, bfloat16 included, for ``module.load_state_dict``; needs
            PyTorch (the ``torch`` extra).

        Raises :class:`ModelCorruptError` if a tensor's dataset is missing, is
        not the one the store wrote for this version, or differs in shape or
        dtype from the manifest; :class:`~dosna.errors.InvalidOptionError` (a
        ValueError) for another ``format``.
        """
        if format not in FORMATS:
            raise InvalidOptionError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
        if format == "torch":
            require("torch", "torch", "ModelStore.load(format='torch')")
        manifest, arrays = self.load_stored(model, version)
        logical = logical_dtypes(manifest)
        if format == "torch":
            return {name: to_torch(a, logical.get(name)) for name, a in arrays.items()}
        if logical:
            name, dtype = next(iter(logical.items()))
            raise TypeError(
                f"tensor {name!r} of model {model!r} is {dtype}, which NumPy has no dtype for: "
                "load it with format='torch'"
            )
        return arrays

    def load_stored(
        self, model: str, version: int | str = "latest"
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The manifest and the arrays as stored (bfloat16 as ``uint16`` bit patterns)."""
        manifest = self.manifest(model, version)
        if manifest["state"] != FINISHED:
            raise ModelStateError(
                f"model {model!r} version {manifest['version']} is {manifest['state']}, not finished"
                + (f": {manifest['error']}" if manifest.get("error") else "")
            )
        return manifest, self._read_arrays(manifest, manifest["tensors"], "tensor", "manifest['tensors']")

    def delete(self, model: str, version: int) -> None:
        """Delete one version; other versions and every other dataset stay.

        The manifest goes first, so a version is never seen with tensors
        missing; then the datasets it lists that carry the store's marker.
        Nothing is deleted by name prefix. A corrupt manifest is refused
        (:class:`ModelCorruptError`): delete that dataset yourself.
        """
        version = self.resolve(model, version)
        manifest = self._read_manifest(model, version)
        owned = _referenced(manifest) + list(manifest["stale"])
        self.connection.del_dataset(_manifest_name(model, version))
        self._delete_owned(owned, model, version)


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
    ) -> dict[str, Any]:
        """One read and one write of the manifest: merge metrics and lineage, set the rest."""
        manifest = self.manifest
        manifest["metrics"].update(json.loads(json.dumps(dict(metrics or {}))))
        manifest["lineage"].update(json.loads(json.dumps(dict(lineage or {}))))
        manifest.update(json.loads(json.dumps(changes)), updated_at=_now())
        validate_manifest(manifest, self.model, self.version, self.store._where(self.model, self.version))
        self.store.connection.get_dataset(self.dataset_name).attrs["manifest"] = manifest
        return manifest

    def _running(self) -> dict[str, Any]:
        manifest = self.manifest
        if manifest["state"] != RUNNING:
            raise ModelStateError(f"model {self.model!r} version {self.version} is no longer running")
        return manifest

    def update(self, *, metrics: Mapping[str, Any] | None = None, **lineage: Any) -> None:
        """Record progress: merge ``metrics`` and lineage entries into the manifest."""
        self._write(metrics=metrics, lineage=lineage)

    def checkpoint(
        self,
        epoch: int,
        arrays: Mapping[str, Any],
        values: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the version's checkpoint: ``arrays`` as datasets, ``values`` as JSON.

        The new arrays are written first, then the manifest points at them
        (one write, which also merges ``metrics``), then the previous
        checkpoint's datasets are deleted. A kill at any moment leaves one
        complete checkpoint: the old one or the new one.

        Parameters
        ----------
        epoch : int
            Epochs completed (>= 1).
        arrays : mapping of str to array
            Learner parameters and optimizer state.
        values : mapping
            JSON values (loop position, history, RNG state as JSON...).
        """
        if not _is_int(epoch) or epoch < 1:
            raise ValueError(f"epoch must be an int >= 1, got {epoch!r}")
        values = json.loads(json.dumps(dict(values)))
        tensors = to_numpy_tensors(arrays)
        manifest = self._running()
        previous = manifest["checkpoint"]
        old = [] if previous is None else [e["dataset"] for e in previous["tensors"]]
        entries = self.store._write_arrays(
            manifest, tensors, "checkpoint", lambda i: _checkpoint_dataset(self.model, self.version, epoch, i)
        )
        kept = {e["dataset"] for e in entries}
        stale = [n for n in old if n not in kept]
        self._write(
            metrics=metrics, checkpoint={"epoch": epoch, "tensors": entries, "values": values}, stale=stale
        )
        self.store._delete_owned(stale, self.model, self.version)

    def load_checkpoint(self) -> tuple[int, dict[str, np.ndarray], dict[str, Any]] | None:
        """The last checkpoint as ``(epoch, arrays, values)``, or None if there is none."""
        manifest = self.manifest
        cp = manifest["checkpoint"]
        if cp is None:
            return None
        arrays = self.store._read_arrays(
            manifest, cp["tensors"], "checkpoint", "manifest['checkpoint']['tensors']"
        )
        return cp["epoch"], arrays, cp["values"]

    def finish(self, tensors: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> None:
        """Store the tensors and mark the version finished (its checkpoint is then deleted)."""
        arrays, logical = stored_tensors(tensors)
        self._finish(arrays, logical, metrics)

    def _finish(
        self, arrays: Mapping[str, np.ndarray], logical: Mapping[str, str], metrics: Mapping[str, Any] | None
    ) -> None:
        manifest = self._running()
        entries = self.store._write_arrays(
            manifest, arrays, "tensor", lambda i: _tensor_dataset(self.model, self.version, i), logical
        )
        cp = manifest["checkpoint"]
        stale = manifest["stale"] + ([] if cp is None else [e["dataset"] for e in cp["tensors"]])
        self._write(
            metrics=metrics, tensors=entries, state=FINISHED, finished_at=_now(), checkpoint=None, stale=stale
        )
        if stale:
            self.store._delete_owned(stale, self.model, self.version)
            self._write(stale=[])

    def fail(self, error: BaseException | str) -> None:
        """Mark the version failed, with the error's text (its checkpoint stays, to resume from)."""
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
