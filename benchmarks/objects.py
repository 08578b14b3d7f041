"""dosna on object stores next to raw client loops and zarr, on the same cluster, in one run.

- ceph: dosna's ceph backend vs a raw single-threaded librados loop
  (``write_full`` / ``read`` of every chunk).
- s3: dosna's s3 backend vs a raw single-threaded boto3 loop (``put_object`` /
  ``get_object`` of every chunk) and vs zarr (uncompressed) on an obstore S3
  store, all against the same radosgw.

W1-sized array by default: float32 (512, 512, 512) in (64, 64, 64) chunks
(512 objects of 1 MiB). Systems are interleaved; figures are best and median of
``--repeat`` rounds; ratios use best times.

Needs the environment of ``scripts/ceph-dev.sh env`` (``eval "$(scripts/ceph-dev.sh env)"``).

Usage::

    python benchmarks/objects.py [--quick] [--repeat 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import time

import numpy as np

import dosna as dn


def chunk_regions(shape, chunks):
    grid = [range(0, s, c) for s, c in zip(shape, chunks)]
    for corner in itertools.product(*grid):
        idx = tuple(c // k for c, k in zip(corner, chunks))
        yield idx, tuple(slice(c, min(c + k, s)) for c, k, s in zip(corner, chunks, shape))


class RawRados:
    name = "raw librados loop"

    def __init__(self):
        import rados

        self.cluster = rados.Rados(conffile=os.environ["DOSNA_CEPH_CONF"])
        self.cluster.connect(timeout=10)
        self.ioctx = self.cluster.open_ioctx(os.environ["DOSNA_CEPH_POOL"])
        self.ioctx.set_namespace("bench-raw")

    def write(self, data, chunks):
        for idx, region in chunk_regions(data.shape, chunks):
            self.ioctx.write_full(".".join(map(str, idx)), np.ascontiguousarray(data[region]).tobytes())

    def read(self, shape, chunks, dtype):
        out = np.empty(shape, dtype)
        for idx, region in chunk_regions(shape, chunks):
            block = out[region]
            raw = self.ioctx.read(".".join(map(str, idx)), block.nbytes)
            block[...] = np.frombuffer(raw, dtype).reshape(block.shape)
        return out

    def clean(self, shape, chunks):
        for idx, _ in chunk_regions(shape, chunks):
            with contextlib.suppress(Exception):
                self.ioctx.remove_object(".".join(map(str, idx)))


class RawBoto3:
    name = "raw boto3 loop"

    def __init__(self):
        import boto3

        self.client = boto3.client("s3", endpoint_url=os.environ["DOSNA_S3_ENDPOINT"])
        self.bucket = os.environ["DOSNA_S3_BUCKET"]
        with contextlib.suppress(Exception):
            self.client.create_bucket(Bucket=self.bucket)

    def write(self, data, chunks):
        for idx, region in chunk_regions(data.shape, chunks):
            key = "bench-raw/" + ".".join(map(str, idx))
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=np.ascontiguousarray(data[region]).tobytes()
            )

    def read(self, shape, chunks, dtype):
        out = np.empty(shape, dtype)
        for idx, region in chunk_regions(shape, chunks):
            block = out[region]
            key = "bench-raw/" + ".".join(map(str, idx))
            raw = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            block[...] = np.frombuffer(raw, dtype).reshape(block.shape)
        return out

    def clean(self, shape, chunks):
        for idx, _ in chunk_regions(shape, chunks):
            self.client.delete_object(Bucket=self.bucket, Key="bench-raw/" + ".".join(map(str, idx)))


class Dosna:
    def __init__(self, backend):
        self.name = f"dosna {backend}"
        if backend == "ceph":
            self.con = dn.connection(
                os.environ["DOSNA_CEPH_POOL"], backend="ceph", conffile=os.environ["DOSNA_CEPH_CONF"]
            )
        else:
            self.con = dn.connection(
                os.environ["DOSNA_S3_BUCKET"], backend="s3", endpoint_url=os.environ["DOSNA_S3_ENDPOINT"]
            )
        self.ds = None

    def write(self, data, chunks):
        if "bench" in self.con:
            self.con.del_dataset("bench")
        self.ds = self.con.create_dataset("bench", shape=data.shape, dtype=data.dtype, chunk_size=chunks)
        self.ds[...] = data

    def read(self, shape, chunks, dtype):
        return self.ds[...]

    def clean(self, shape, chunks):
        self.con.del_dataset("bench")


def zarr_s3_store(bucket: str = "dosna-bench-zarr"):
    """A zarr store on the dev cluster's radosgw through obstore (Rust), bucket created if needed."""
    import boto3
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    with contextlib.suppress(Exception):
        boto3.client("s3", endpoint_url=os.environ["DOSNA_S3_ENDPOINT"]).create_bucket(Bucket=bucket)
    return ObjectStore(
        S3Store(
            bucket,
            endpoint=os.environ["DOSNA_S3_ENDPOINT"],
            access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )
    )


class ZarrS3:
    name = "zarr (obstore S3)"

    def __init__(self):
        self.store = zarr_s3_store()

    def write(self, data, chunks):
        import zarr

        self.array = zarr.create_array(
            store=self.store,
            shape=data.shape,
            chunks=chunks,
            dtype=data.dtype,
            compressors=None,
            fill_value=0,
            overwrite=True,
        )
        self.array[...] = data

    def read(self, shape, chunks, dtype):
        return self.array[...]

    def clean(self, shape, chunks):
        pass  # overwritten next round


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not (os.environ.get("DOSNA_CEPH_CONF") and os.environ.get("DOSNA_S3_ENDPOINT")):
        sys.exit('needs a cluster: scripts/ceph-dev.sh start && eval "$(scripts/ceph-dev.sh env)"')
    shape, chunks = ((128, 128, 128), (32, 32, 32)) if args.quick else ((512, 512, 512), (64, 64, 64))
    if args.quick:
        args.repeat = 1
    data = np.random.default_rng(0).standard_normal(shape, dtype="f4")
    groups = {"ceph": [RawRados(), Dosna("ceph")], "s3": [RawBoto3(), Dosna("s3"), ZarrS3()]}
    times: dict = {}
    for _ in range(args.repeat):
        for group, systems in groups.items():
            for system in systems:
                print(f"{group}: {system.name}", file=sys.stderr, flush=True)
                start = time.perf_counter()
                system.write(data, chunks)
                written = time.perf_counter()
                back = system.read(shape, chunks, data.dtype)
                done = time.perf_counter()
                if not np.array_equal(back, data):
                    raise AssertionError(f"{system.name} read back wrong data")
                del back
                system.clean(shape, chunks)
                entry = times.setdefault(group, {}).setdefault(system.name, {"write": [], "read": []})
                entry["write"].append(data.nbytes / 1e6 / (written - start))
                entry["read"].append(data.nbytes / 1e6 / (done - written))
    report = {"shape": shape, "chunks": chunks, "MB/s": {}, "ratios": {}}
    for systems in times.values():
        for name, ops in systems.items():
            report["MB/s"][name] = {
                op: {"best": max(v), "median": statistics.median(v)} for op, v in ops.items()
            }
    best = {name: {op: r["best"] for op, r in ops.items()} for name, ops in report["MB/s"].items()}
    for ours, peer in [
        ("dosna ceph", "raw librados loop"),
        ("dosna s3", "raw boto3 loop"),
        ("dosna s3", "zarr (obstore S3)"),
    ]:
        report["ratios"][f"{ours} / {peer}"] = {
            op: best[ours][op] / best[peer][op] for op in ("write", "read")
        }
    print(f"float32 {shape} in {chunks} chunks: MB/s, best / median of {args.repeat}")
    for name, ops in report["MB/s"].items():
        print(
            f"  {name:20} write {ops['write']['best']:8.1f} / {ops['write']['median']:<8.1f}"
            f" read {ops['read']['best']:8.1f} / {ops['read']['median']:.1f}"
        )
    for pair, r in report["ratios"].items():
        print(f"  {pair:40} write {r['write']:.2f}x  read {r['read']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
