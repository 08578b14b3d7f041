"""ceph and s3 against the throw-away cluster: faults, corruption, credentials, layout.

The cluster comes from scripts/ceph-dev.sh (run_tests.sh starts it). Faults are
made for real: a daemon is frozen with SIGSTOP (and always thawed), or the client
is pointed at a loopback port where nothing listens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import time

import numpy as np
import pytest

import dosna as dn
from dosna.errors import ChunkCorruptError, InvalidNameError, StoreUnavailableError

CEPH_CONF = os.environ.get("DOSNA_CEPH_CONF")
POOL = os.environ.get("DOSNA_CEPH_POOL")
S3_ENDPOINT = os.environ.get("DOSNA_S3_ENDPOINT")
BUCKET = os.environ.get("DOSNA_S3_BUCKET")


def needs_ceph(test):
    """Marked ``ceph``; skipped without the cluster."""
    skip = pytest.mark.skipif(not (CEPH_CONF and POOL), reason="no ceph cluster configured (run_tests.sh starts one)")
    return pytest.mark.ceph(skip(test))


def needs_s3(test):
    """Marked ``s3``; skipped without the cluster's S3 gateway."""
    skip = pytest.mark.skipif(
        not (S3_ENDPOINT and BUCKET), reason="no S3 endpoint configured (run_tests.sh starts one)"
    )
    return pytest.mark.s3(skip(test))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def frozen(daemon: str):
    """SIGSTOP one daemon of the dev cluster for the duration of the block."""
    pid_file = os.path.join(os.path.dirname(CEPH_CONF), f"{daemon}.pid")
    if not os.path.exists(pid_file):
        pytest.skip(f"{daemon} was not started by scripts/ceph-dev.sh")
    with open(pid_file) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def ceph():
    with dn.connection(POOL, backend="ceph", conffile=CEPH_CONF, op_timeout=3) as con:
        yield con
        for name in con.datasets():
            con.del_dataset(name)


@pytest.fixture
def s3():
    with dn.connection(BUCKET, backend="s3", endpoint_url=S3_ENDPOINT, op_timeout=3, retries=2) as con:
        yield con
        for name in con.datasets():
            con.del_dataset(name)


# -- ceph ----------------------------------------------------------------------------
@needs_ceph
def test_ceph_dead_cluster_fails_within_timeout(tmp_path):
    conf = tmp_path / "dead.conf"
    with open(CEPH_CONF) as f:  # the same cluster's config, its monitor moved to ports nobody listens on
        text, moved = re.subn(
            r"^mon host = .*$",
            f"mon host = [v2:127.0.0.1:{free_port()},v1:127.0.0.1:{free_port()}]",
            f.read(),
            flags=re.M,
        )
    assert moved == 1
    conf.write_text(text)
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="within 2 s"):
        dn.Connection(POOL, backend="ceph", conffile=str(conf), timeout=2).connect()
    assert time.monotonic() - start < 15


@needs_ceph
def test_ceph_operations_time_out_when_the_osd_stops(ceph):
    ds = ceph.create_dataset("d", data=np.arange(16.0).reshape(4, 4), chunk_size=2)
    with frozen("osd.0"):
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"read (chunk|metadata)"):
            ds[0, 0]
        assert time.monotonic() - start < 20
    np.testing.assert_array_equal(ds[...], np.arange(16.0).reshape(4, 4))  # fine once it is back


@needs_ceph
def test_ceph_missing_pool_and_conffile_are_clear(tmp_path):
    with pytest.raises(dn.DosnaError, match="pool 'no-such-pool' does not exist"):
        dn.Connection("no-such-pool", backend="ceph", conffile=CEPH_CONF).connect()
    with pytest.raises(FileNotFoundError, match=r"missing\.conf"):
        dn.Connection(POOL, backend="ceph", conffile=str(tmp_path / "missing.conf")).connect()


@needs_ceph
def test_ceph_wrong_size_chunk_is_corrupt(ceph):
    import rados

    ds = ceph.create_dataset("c", data=np.ones((4, 4), "f4"), chunk_size=2, checksum=False)
    cluster = rados.Rados(conffile=CEPH_CONF)
    cluster.connect(timeout=5)
    try:
        ioctx = cluster.open_ioctx(POOL)
        ioctx.set_namespace("c")
        uid = ds.meta.uid  # chunks live under the dataset's incarnation
        ioctx.write_full(f"{uid}/1.1", b"\0" * 10)
        with pytest.raises(ChunkCorruptError, match=r"\(1, 1\).*10 bytes, expected 16"):
            ds[2:, 2:]
        ioctx.write_full(f"{uid}/1.0", b"\0" * 20)  # too long is corrupt too (seen on whole-chunk reads)
        with pytest.raises(ChunkCorruptError):
            ds[2:4, 0:2]
        ioctx.close()
    finally:
        cluster.shutdown()


@needs_ceph
def test_ceph_layout_and_delete_without_scanning(ceph):
    import rados

    ds = ceph.create_dataset(
        "lay", data=np.arange(12, dtype="u2").reshape(3, 4), chunk_size=2, checksum=False
    )
    cluster = rados.Rados(conffile=CEPH_CONF)
    cluster.connect(timeout=5)
    try:
        ioctx = cluster.open_ioctx(POOL)
        ioctx.set_namespace("lay")
        keys = sorted(o.key for o in ioctx.list_objects())
        uid = ds.meta.uid
        assert keys == [f"{uid}/0.0", f"{uid}/0.1", f"{uid}/1.0", f"{uid}/1.1", "dosna.meta"]
        # raw edge chunk bytes, padded to the full chunk with the fill value
        assert ioctx.read(f"{uid}/1.1", 100) == np.array([[10, 11], [0, 0]], "u2").tobytes()
        ds.delete()
        assert sorted(o.key for o in ioctx.list_objects()) == []
        ioctx.close()
    finally:
        cluster.shutdown()
    assert "lay" not in ceph


# -- s3 --------------------------------------------------------------------------------
@needs_s3
def test_s3_dead_endpoint_fails_fast_without_credentials_in_message(caplog):
    caplog.set_level(logging.DEBUG, logger="dosna")
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError) as err:
        dn.Connection(
            BUCKET, backend="s3", endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=2, retries=1
        ).connect()
    assert time.monotonic() - start < 30
    for secret in (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in str(err.value) and secret not in caplog.text


@needs_s3
def test_s3_stopped_gateway_gives_clear_error_and_no_metadata(s3):
    with frozen("rgw.x"):
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as err:
            s3.create_dataset("never", data=np.ones((8, 8)), chunk_size=4)
        assert time.monotonic() - start < 60
        for secret in (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]):
            assert secret not in str(err.value)
    time.sleep(0.5)
    assert "never" not in s3  # no metadata claims data that was never written
    assert s3.backend.read_meta("never") is None


@needs_s3
def test_s3_gateway_stopping_during_a_load_leaves_no_metadata(s3):
    class FreezesGateway:
        """A source that stops radosgw after its first chunks were written."""

        shape, dtype = (16, 16), np.dtype("f8")

        def __init__(self, stack: contextlib.ExitStack) -> None:
            self.reads, self.stack = 0, stack

        def __getitem__(self, key):
            self.reads += 1
            if self.reads == 3:
                self.stack.enter_context(frozen("rgw.x"))
            return np.ones(self.shape)[key]

    with contextlib.ExitStack() as stack, pytest.raises(StoreUnavailableError):
        s3.create_dataset("halfway", data=FreezesGateway(stack), chunk_size=4)
    time.sleep(0.5)
    assert "halfway" not in s3 and s3.backend.read_meta("halfway") is None


@needs_s3
def test_s3_wrong_size_chunk_is_corrupt_and_no_head_before_get(s3):
    import boto3

    ds = s3.create_dataset("c", data=np.ones((4, 4), "f8"), chunk_size=2, checksum=False)
    raw = boto3.client("s3", endpoint_url=S3_ENDPOINT)
    raw.put_object(Bucket=BUCKET, Key=f"c/{ds.meta.uid}/0.1", Body=b"\0" * 7)
    with pytest.raises(ChunkCorruptError, match=r"7 bytes, expected 32"):
        ds[0:2, 2:4]
    calls = []
    s3.backend.client.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
    ds.del_chunk((1, 1))
    calls.clear()
    # the metadata (a resize elsewhere is seen), the missing chunk (no HEAD), then the metadata
    # again: a chunk missing because the dataset was deleted meanwhile is an error, not fill values
    assert ds[3, 3] == 0
    assert calls == ["GetObject", "GetObject", "GetObject"]
    calls.clear()
    ds[0, :2]  # partial read of a present chunk: the metadata and one ranged GET
    assert calls == ["GetObject", "GetObject"]


@needs_s3
def test_s3_layout_one_bucket_datasets_as_prefixes(s3):
    import boto3

    a = s3.create_dataset("a", data=np.zeros((2, 2)), chunk_size=2)
    s3.create_dataset("b", shape=(3,), dtype="i1")
    raw = boto3.client("s3", endpoint_url=S3_ENDPOINT)
    keys = sorted(o["Key"] for o in raw.list_objects_v2(Bucket=BUCKET).get("Contents", []))
    assert [k for k in keys if k[:2] in ("a/", "b/")] == ["a/.dosna.json", f"a/{a.meta.uid}/0.0", "b/.dosna.json"]
    assert sorted(s3) == ["a", "b"]
    # a creation that never committed left chunks but no metadata: not a dataset,
    # and a new dataset of that name does not inherit them
    raw.put_object(Bucket=BUCKET, Key="ghost/0", Body=np.ones(2).tobytes())
    assert "ghost" not in s3
    assert s3.create_dataset("ghost", shape=(2,), chunk_size=2)[...].tolist() == [0.0, 0.0]


def test_s3_invalid_bucket_names_refused_before_any_request():
    for bad in ["ab", "UPPER", "under_score", "-start", "end-", "a" * 64, "1.2.3.4", "a..b"]:
        with pytest.raises(InvalidNameError):
            dn.Connection(bad, backend="s3", endpoint_url="http://127.0.0.1:9")


# -- stores that share a bucket or a pool under prefixes ------------------------------------------
def _prefixed_stores_are_separate(url_a: str, url_b: str, **options) -> None:
    """Two stores under prefixes of one bucket or pool: each sees only its own datasets, reached
    again through its ``url``; a delete in one leaves the other whole; mode "r" writes nothing."""
    from dosna.errors import ReadOnlyError

    with dn.open(url_a, **options) as a, dn.open(url_b, **options) as b:
        try:
            a.create_dataset("x", data=np.arange(6.0).reshape(2, 3), chunk_size=(1, 3))
            b.create_dataset("x", data=-np.arange(6.0).reshape(2, 3), chunk_size=(2, 2))
            b.create_dataset("only-b", shape=(2,), dtype="i1")
            assert a.datasets() == ["x"] and b.datasets() == ["only-b", "x"]
            with dn.open(a.url, mode="r", **options) as again:
                np.testing.assert_array_equal(again["x"][...], np.arange(6.0).reshape(2, 3))
                with pytest.raises(ReadOnlyError):
                    again["x"][0, 0] = 1.0
                with pytest.raises(ReadOnlyError):
                    again.create_dataset("y", shape=(1,))
            a.del_dataset("x")
            assert a.datasets() == [] and b.datasets() == ["only-b", "x"]
            np.testing.assert_array_equal(b["x"][...], -np.arange(6.0).reshape(2, 3))
        finally:
            for con in (a, b):
                for name in con.datasets():
                    con.del_dataset(name)


@needs_s3
def test_s3_stores_under_prefixes_of_one_bucket_are_separate():
    run = f"runs-{os.getpid()}"
    _prefixed_stores_are_separate(
        f"s3://{BUCKET}/{run}/a", f"s3://{BUCKET}/{run}", endpoint_url=S3_ENDPOINT, op_timeout=3
    )


@needs_ceph
def test_ceph_stores_under_prefixes_of_one_pool_are_separate():
    run = f"runs-{os.getpid()}"
    _prefixed_stores_are_separate(
        f"ceph://{POOL}/{run}/a", f"ceph://{POOL}/{run}", conffile=CEPH_CONF, op_timeout=3
    )
