"""The ``s3`` backend: datasets as key prefixes in one S3 bucket, through boto3.

Layout in the bucket given as the connection name, under the optional store
prefix (``s3://bucket/runs/1`` has the prefix ``runs/1``)::

    [<prefix>/]<dataset>/.dosna.json      metadata (JSON)
    [<prefix>/]<dataset>/<uid>/3.0.12     chunk (3, 0, 12): the chunk's encoded bytes

``<uid>`` is the dataset's uid, so a re-created or half-created dataset never
shares a chunk with another; datasets written before uids existed keep their
chunks at ``<dataset>/3.0.12``. A dataset's metadata is created with a
conditional PUT (``If-None-Match: *``): of two clients creating the same name
at once, one gets DatasetExistsError.

One bucket holds one store, or several under different prefixes (the original
used one bucket per dataset). A chunk
is read with a single GET (a missing key reads as the fill value: no HEAD
first), partial reads use ranged GETs, and many-chunk calls run requests
concurrently. Credentials come from the standard AWS chain (environment
variables, shared credentials file, instance roles); they never appear in
dosna's messages. TLS certificates are verified unless ``verify=False``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from ..errors import (
    BackendUnavailableError,
    DatasetExistsError,
    DatasetNotFoundError,
    DosnaError,
    InvalidNameError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from ..io.codecs import Encoded
from ..metadata import DatasetMeta
from .base import IOHints, chunk_area, chunk_key, parse_chunk_key
from .objects import EncodedObjectBackend
from .prefixes import validate_prefix

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailableError("the s3 backend needs boto3: pip install 'dosna[s3]'") from exc

__all__ = ["S3Backend", "validate_bucket_name"]

log = logging.getLogger(__name__)

META_KEY = ".dosna.json"
# Clients of backends unpickled in worker processes, shared per process: a task
# arrives with a fresh copy of the backend, and a client takes ~50 ms to build.
_WORKER_CLIENTS: dict[tuple, Any] = {}
_WORKER_LOCK = threading.Lock()
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def validate_bucket_name(name: str) -> str:
    """Return ``name`` if it is a valid S3 bucket name, else raise InvalidNameError (before any request)."""
    if (
        not isinstance(name, str)
        or not _BUCKET_RE.fullmatch(name)
        or ".." in name
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name)
    ):
        raise InvalidNameError(
            f"invalid S3 bucket name {name!r}: 3-63 characters from lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", "unknown"))
    return type(exc).__name__


class S3Backend(EncodedObjectBackend):
    """Datasets as key prefixes in one S3 bucket.

    Parameters
    ----------
    name : str
        The bucket (created on connect if missing and ``create`` is true).
    prefix : str, default ``''``
        Where in the bucket the datasets are: ``'runs/1'`` keeps them under
        ``runs/1/``, so several stores share a bucket.
    endpoint_url : str, optional
        S3 endpoint, e.g. ``'http://127.0.0.1:7480'`` for a local radosgw;
        default: AWS.
    verify : bool or str, default True
        Verify TLS certificates; or the path of a CA bundle. False disables
        verification (never do that over an untrusted network).
    profile_name : str, default ``'default'``
        Profile in the shared credentials/config files; ``'default'`` means the
        standard chain (environment variables first).
    region_name : str, optional
        Region (default ``$AWS_DEFAULT_REGION`` or ``us-east-1``).
    create : bool, default True
        Create the bucket if it does not exist.
    timeout : float, default 5
        Seconds to connect to the endpoint.
    op_timeout : float, default 30
        Seconds to wait for a response.
    retries : int, default 4
        Attempts for transient errors (botocore's standard retry mode).
    io_threads : int, default 8
        Requests in flight at once for one many-chunk call.
    addressing_style : str, default ``'path'``
        ``'path'`` (radosgw, MinIO) or ``'virtual'``.
    """

    name: ClassVar[str] = "s3"

    def __init__(
        self,
        name: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        verify: bool | str = True,
        profile_name: str | None = "default",
        region_name: str | None = None,
        create: bool = True,
        timeout: float = 5,
        op_timeout: float = 30,
        retries: int = 4,
        io_threads: int = 8,
        addressing_style: str = "path",
    ) -> None:
        super().__init__(validate_bucket_name(name))
        self.prefix = validate_prefix(prefix)
        self._base = f"{self.prefix}/" if self.prefix else ""
        self.endpoint_url = endpoint_url
        self.verify = verify
        self.profile_name = None if profile_name in (None, "default") else profile_name
        self.region_name = region_name or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.create = create
        self.timeout = float(timeout)
        self.op_timeout = float(op_timeout)
        self.retries = int(retries)
        self.io_threads = max(1, int(io_threads))
        self.addressing_style = addressing_style
        self._reset()

    def _reset(self) -> None:
        self._client: Any = None
        self._shared = False
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # worker processes build their own client
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._base = f"{self.prefix}/" if self.prefix else ""
        self._reset()
        key = tuple(sorted((k, str(v)) for k, v in state.items()))
        with _WORKER_LOCK:
            if key not in _WORKER_CLIENTS:
                _WORKER_CLIENTS[key] = self._make_client()
            self._client = _WORKER_CLIENTS[key]
        self._shared = True

    @property
    def location(self) -> str:
        where = f"s3://{self.connection_name}" + (f"/{self.prefix}" if self.prefix else "")
        return where + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` with the endpoint and profile, if not the defaults, as a query."""
        query = {
            k: v
            for k, v in (
                ("endpoint_url", self.endpoint_url),
                ("profile_name", self.profile_name),
                ("addressing_style", None if self.addressing_style == "path" else self.addressing_style),
            )
            if v
        }
        path = f"s3://{self.connection_name}" + (f"/{self.prefix}" if self.prefix else "")
        return path + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def _key(self, dataset: str, leaf: str = "") -> str:
        return f"{self._base}{dataset}/{leaf}"

    def _area(self, meta: DatasetMeta) -> str:
        """The key prefix of ``meta``'s chunks (see :func:`~dosna.backends.base.chunk_area`)."""
        return f"{self._base}{chunk_area(meta)}/"

    def _chunk_key(self, meta: DatasetMeta, idx: tuple[int, ...]) -> str:
        return f"{self._area(meta)}{chunk_key(idx)}"

    # -- connection ------------------------------------------------------------
    def _make_client(self) -> Any:
        log.debug(
            "s3 client for %s: %d attempts per request (standard retries), timeouts %g s / %g s",
            self.location,
            self.retries,
            self.timeout,
            self.op_timeout,
        )
        config = botocore.config.Config(
            s3={"addressing_style": self.addressing_style},
            retries={"max_attempts": self.retries, "mode": "standard"},
            connect_timeout=self.timeout,
            read_timeout=self.op_timeout,
            max_pool_connections=max(10, 2 * self.io_threads),
            signature_version="s3v4",
        )
        try:
            session = boto3.session.Session(profile_name=self.profile_name)
        except botocore.exceptions.ProfileNotFound:
            raise DosnaError(f"AWS profile {self.profile_name!r} is not configured") from None
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            verify=self.verify,
            region_name=self.region_name,
            config=config,
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def connect(self) -> None:
        with self._failures("reach the bucket"):
            try:
                self.client.head_bucket(Bucket=self.connection_name)
                return
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
        if not self.create:
            raise StoreNotFoundError(f"bucket {self.location} does not exist (and create=False)")
        try:
            self.client.create_bucket(Bucket=self.connection_name)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou",):
                raise DosnaError(f"cannot create bucket {self.location}: {_code(exc)}") from None

    def store_exists(self) -> bool:
        """Whether the bucket exists and, with a prefix, holds an object under it."""
        with self._failures("reach the bucket"):
            try:
                self.client.head_bucket(Bucket=self.connection_name)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                    return False
                raise
            if not self.prefix:
                return True
            page = self.client.list_objects_v2(Bucket=self.connection_name, Prefix=self._base, MaxKeys=1)
        return bool(page.get("Contents"))

    def disconnect(self) -> None:
        with self._lock:
            if self._client is not None and not self._shared:
                with contextlib.suppress(Exception):
                    self._client.close()
            self._client = None

    @contextlib.contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        """Turn transport and service errors into StoreUnavailableError; no credentials in messages."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _MISSING:
                raise
            raise StoreUnavailableError(f"{self.location}: {what} failed: {_code(exc)}") from None
        except botocore.exceptions.NoCredentialsError:
            raise DosnaError(
                f"{self.location}: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "or a profile)"
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreUnavailableError(f"{self.location}: {what} failed: {type(exc).__name__}") from None

    # -- helpers ------------------------------------------------------------------
    def _get(self, key: str, what: str, byte_range: tuple[int, int] | None = None) -> bytes | None:
        kwargs = {"Bucket": self.connection_name, "Key": key}
        if byte_range is not None:
            kwargs["Range"] = f"bytes={byte_range[0]}-{byte_range[0] + byte_range[1] - 1}"
        with self._failures(what):
            try:
                return self.client.get_object(**kwargs)["Body"].read()
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise

    def _exists(self, key: str, what: str) -> bool:
        with self._failures(what):
            try:
                self.client.head_object(Bucket=self.connection_name, Key=key)
                return True
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _MISSING:
                    return False
                raise

    def _put(self, key: str, body: bytes, what: str) -> None:
        with self._failures(what):
            self.client.put_object(Bucket=self.connection_name, Key=key, Body=body)

    def _objects(self, prefix: str, what: str) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        with self._failures(what):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.connection_name, Prefix=prefix
            ):
                found.extend((obj["Key"], int(obj.get("Size", 0))) for obj in page.get("Contents", ()))
        return found

    def _keys(self, prefix: str, what: str) -> list[str]:
        return [key for key, _ in self._objects(prefix, what)]

    # -- datasets -------------------------------------------------------------------
    def list_datasets(self) -> list[str]:
        prefixes: list[str] = []
        with self._failures("list datasets"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.connection_name, Prefix=self._base, Delimiter="/"
            ):
                prefixes.extend(p["Prefix"][len(self._base) : -1] for p in page.get("CommonPrefixes", ()))
        return sorted(name for name in prefixes if self._exists(self._key(name, META_KEY), "list datasets"))

    def meta_location(self, dataset: str) -> str:
        return f"{self.location}/{dataset}/{META_KEY}"

    def read_meta(self, dataset: str) -> bytes | None:
        return self._get(self._key(dataset, META_KEY), f"read metadata of {dataset!r}")

    def create_meta(self, dataset: str, data: bytes) -> None:
        exists = DatasetExistsError(f"dataset {dataset!r} already exists in {self.location}")
        key = self._key(dataset, META_KEY)
        if self._exists(key, f"create dataset {dataset!r}"):
            raise exists
        # create-if-absent: S3 (since 2024) and radosgw honour If-None-Match on PUT
        with self._failures(f"create dataset {dataset!r}"):
            try:
                self.client.put_object(
                    Bucket=self.connection_name, Key=key, Body=bytes(data), IfNoneMatch="*"
                )
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _CONFLICT:
                    raise exists from None
                raise

    def update_meta(self, dataset: str, data: bytes) -> None:
        if not self._exists(self._key(dataset, META_KEY), f"update metadata of {dataset!r}"):
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.location}")
        self._put(self._key(dataset, META_KEY), bytes(data), f"update metadata of {dataset!r}")

    def delete_dataset(self, dataset: str) -> None:
        meta_key = self._key(dataset, META_KEY)
        if not self._exists(meta_key, f"delete dataset {dataset!r}"):
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist in {self.location}")
        raw = self.read_meta(dataset)
        try:
            area = chunk_area(DatasetMeta.from_json(raw)) if raw is not None else dataset
        except (ValueError, TypeError, KeyError):
            area = dataset
        with self._failures(f"delete dataset {dataset!r}"):
            self.client.delete_object(Bucket=self.connection_name, Key=meta_key)  # gone from here on
            # this incarnation's own keys only: never those of a store whose prefix runs
            # through it, nor those of another creation of the name that may be under way
            base = f"{self._base}{area}/"
            keys = [k for k in self._keys(base, f"delete dataset {dataset!r}") if "/" not in k[len(base) :]]
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(
                    Bucket=self.connection_name,
                    Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
                )

    # -- chunks ----------------------------------------------------------------------------
    def chunk_location(self, meta: DatasetMeta, idx: tuple[int, ...]) -> str:
        return f"{self.location}/{chunk_area(meta)}/{chunk_key(idx)}"

    def fetch(self, meta: DatasetMeta, idx: tuple[int, ...], byte_range: tuple[int, int]) -> bytes | None:
        return self._get(self._chunk_key(meta, idx), f"read chunk {idx} of {meta.name!r}", byte_range)

    @property
    def hints(self) -> IOHints:
        return IOHints(threads=self.io_threads, parallel_min_part=0)  # every request waits on the network

    def store(self, meta: DatasetMeta, idx: tuple[int, ...], data: Encoded) -> None:
        self._put(self._chunk_key(meta, idx), bytes(data), f"write chunk {idx} of {meta.name!r}")

    def has_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> bool:
        return self._exists(self._chunk_key(meta, idx), f"look up chunk {idx} of {meta.name!r}")

    def delete_chunk(self, meta: DatasetMeta, idx: tuple[int, ...]) -> None:
        with self._failures(f"delete chunk {idx} of {meta.name!r}"):
            self.client.delete_object(Bucket=self.connection_name, Key=self._chunk_key(meta, idx))

    def stored_bytes(self, meta: DatasetMeta) -> int:
        prefix = self._area(meta)
        return sum(
            size
            for key, size in self._objects(prefix, f"list chunks of {meta.name!r}")
            if parse_chunk_key(key[len(prefix) :], meta.ndim, meta.chunk_grid) is not None
        )

    def list_chunks(self, meta: DatasetMeta) -> Iterable[tuple[int, ...]]:
        prefix = self._area(meta)
        keys = self._keys(prefix, f"list chunks of {meta.name!r}")
        return sorted(
            i
            for i in (parse_chunk_key(k[len(prefix) :], meta.ndim, meta.chunk_grid) for k in keys)
            if i is not None
        )
