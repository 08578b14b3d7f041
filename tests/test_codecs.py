"""Codec configuration, metadata formats and the datasets written by earlier versions."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import dosna as dn
from dosna.errors import BackendUnavailableError, CodecUnavailableError, MetadataCorruptError
from dosna.io.codecs import COMPRESSIONS, CodecSpec

FORMAT1 = Path(__file__).parent / "data" / "format1"


@pytest.fixture
def con(tmp_path):
    with dn.Connection("store", backend="hdf5", directory=tmp_path) as con:
        yield con


def test_defaults_and_aliases(con):
    ds = con.create_dataset("d", shape=(10, 10), dtype="f4", chunks=(5, 5), fill_value=2.5)
    assert ds.chunk_size == (5, 5) and ds.fillvalue == 2.5
    assert (ds.compression, ds.compression_opts, ds.shuffle, ds.checksum) == (None, None, False, True)
    z = con.create_dataset("z", shape=(4,), compression="zstd")
    assert (z.compression, z.compression_opts, z.shuffle, z.checksum) == ("zstd", 3, True, True)
    g = con.create_dataset(
        "g", shape=(4,), compression="gzip", compression_opts=9, shuffle=False, checksum=False
    )
    assert (g.compression, g.compression_opts, g.shuffle, g.checksum) == ("gzip", 9, False, False)
    with pytest.raises(TypeError, match="not both"):
        con.create_dataset("x", shape=(4,), chunk_size=2, chunks=2)
    with pytest.raises(TypeError, match="not both"):
        con.create_dataset("x", shape=(4,), fillvalue=1, fill_value=1)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"compression": "snappy"}, ValueError),
        ({"compression": 3}, TypeError),
        ({"compression": "zstd", "compression_opts": 99}, ValueError),
        ({"compression": "gzip", "compression_opts": -1}, ValueError),
        ({"compression": "lz4", "compression_opts": 0}, ValueError),
        ({"compression": "zstd", "compression_opts": 2.5}, TypeError),
        ({"compression_opts": 3}, ValueError),
        ({"shuffle": True}, ValueError),
        ({"compression": "zstd", "shuffle": "yes"}, TypeError),
        ({"checksum": 1}, TypeError),
    ],
)
def test_bad_codec_options_refused_before_anything_is_written(con, tmp_path, kwargs, error):
    with pytest.raises(error):
        con.create_dataset("bad", data=np.ones(8), **kwargs)
    assert "bad" not in con and not (tmp_path / "store" / "bad").exists()


def test_missing_codec_package_names_the_extra(con, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "numcodecs", None)  # as if it were not installed
    with pytest.raises(CodecUnavailableError, match=r"pip install 'dosna\[codecs\]'") as err:
        con.create_dataset("needs", data=np.ones(8), compression="zstd")
    assert isinstance(err.value, BackendUnavailableError)
    assert "needs" not in con and not (tmp_path / "store" / "needs").exists()
    con.create_dataset("plain", data=np.ones(8))  # no codec package needed without compression


def test_codec_json_round_trip_and_unknown_entries():
    for name in COMPRESSIONS:
        spec = CodecSpec.create(name)
        assert CodecSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    good = CodecSpec.create("zstd").to_json()
    for bad in [
        {**good, "compression": "brotli"},
        {**good, "checksum": "md5"},
        {**good, "level": 99},
        {**good, "checksum_block": 0},
        {**good, "shuffle": "yes"},
        [],
    ]:
        with pytest.raises(ValueError):
            CodecSpec.from_json(bad)  # type: ignore[arg-type]


def test_newer_metadata_format_is_refused_clearly(con, tmp_path):
    con.create_dataset("m", shape=(2,))
    path = tmp_path / "store" / "m" / ".dosna.json"
    doc = json.loads(path.read_text())
    doc["dosna_format"] = 3
    path.write_text(json.dumps(doc))
    with pytest.raises(MetadataCorruptError, match=r"format 3 is not supported.*upgrade dosna"):
        con["m"]


def test_format1_store_keeps_opening_reading_and_writing(tmp_path):
    shutil.copytree(FORMAT1, tmp_path / "old")
    with dn.Connection("store", backend="hdf5", directory=tmp_path / "old") as con:
        assert con.datasets() == ["cube", "ints"]
        cube = con["cube"]
        expected = np.arange(5 * 6 * 7, dtype="f4").reshape(5, 6, 7)
        assert cube.meta.format == 1 and not cube.checksum and cube.compression is None
        np.testing.assert_array_equal(cube[...], expected)
        assert cube.attrs["units"] == "K"
        ints = con["ints"]
        np.testing.assert_array_equal(ints[...], [-3, -3, 1, 2, 3, -3, -3, -3, -3, -3])
        cube[4, 5] = -1  # an edge chunk, rewritten in the old layout
        expected[4, 5] = -1
        cube.attrs["more"] = 1
        ints[9] = 9
        again = dn.Connection("store", backend="hdf5", directory=tmp_path / "old").connect()
        np.testing.assert_array_equal(again["cube"][...], expected)
        assert again["ints"][9] == 9
        doc = json.loads((tmp_path / "old" / "store" / "cube" / ".dosna.json").read_text())
        assert doc["dosna_format"] == 1 and "codec" not in doc and doc["attrs"] == {"units": "K", "more": 1}
        with pytest.raises(MetadataCorruptError, match=r"format 1.*clone"):
            cube.resize((6, 6, 7))
        copy = cube.clone("cube2", data=True)  # a copy gets today's format
        assert copy.meta.format == 2 and copy.checksum
        np.testing.assert_array_equal(copy[...], expected)
        copy.resize((6, 6, 7))
        assert copy.shape == (6, 6, 7)


def test_compressed_data_is_smaller_and_reported(con):
    x = np.linspace(0, 1, 64 * 64 * 16, dtype="f4").reshape(64, 64, 16)
    raw = con.create_dataset("raw", data=x, chunks=(32, 32, 16))
    packed = con.create_dataset("packed", data=x, chunks=(32, 32, 16), compression="zstd")
    assert raw.nbytes_stored > x.nbytes  # checksums and HDF5 headers
    assert packed.nbytes_stored < x.nbytes / 2
    np.testing.assert_array_equal(packed[...], x)


def _framed_block_by_block(frames, chunk: np.ndarray) -> bytes:
    """The documented object layout, built the slow and obvious way: raw blocks, each followed by its crc."""
    import crc32c

    raw = np.ascontiguousarray(chunk).tobytes()
    return b"".join(
        raw[i : i + frames.block] + crc32c.crc32c(raw[i : i + frames.block]).to_bytes(4, "little")
        for i in range(0, len(raw), frames.block)
    )


@pytest.mark.parametrize("fast_crc", [True, False], ids=["default-crc", "crc32c-package"])
def test_framing_of_any_strides_matches_the_layout(monkeypatch, fast_crc):
    """Chunks framed straight from strided views (blocks of whole rows or not) give the documented bytes."""
    from dosna.io import codecs

    if not fast_crc:
        monkeypatch.setitem(sys.modules, "crc32c_rs", None)
        monkeypatch.setattr(codecs, "_crc_function", None)
    assert codecs.crc32c(b"123456789") == 0xE3069283
    rng = np.random.default_rng(7)
    shapes = [
        (64, 64, 64),
        (32, 32),
        (128, 128, 3),
        (100, 100),
        (7,),
        (4096,),
        (8192,),
        (64, 32, 16, 2),
        (256, 64),
    ]
    for dtype in ("f4", "f8", "u1", "i2", "c16"):
        frames = codecs.Framing(CodecSpec.create(checksum=True), np.dtype(dtype))
        for shape in shapes:
            whole = rng.integers(0, 100, tuple(2 * n for n in shape)).astype(dtype)
            chunk = whole[tuple(slice(1, 2 * n, 2) for n in shape)]  # every other element: not contiguous
            stored = frames.frame(chunk)
            assert bytes(memoryview(stored).cast("B")) == _framed_block_by_block(frames, chunk), (
                dtype,
                shape,
            )
            back = np.empty(shape, dtype)
            frames.unframe_into(stored, back)
            np.testing.assert_array_equal(back, chunk)


def test_a_message_followed_by_its_crc_always_has_the_same_crc():
    """The property one-call verification rests on: crc32c(m + crc32c(m)) is one constant."""
    from dosna.io import codecs

    rng = np.random.default_rng(3)
    for size in (1, 3, 4, 5, 100, 4096, 16384, 70_000):
        message = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        framed = message + codecs.crc32c(message).to_bytes(4, "little")
        assert codecs.crc32c(framed) == codecs._CRC_RESIDUE


@pytest.mark.parametrize("shape", [(64, 64, 64), (32, 32), (100, 100), (4096,), (5000,), (256, 64), (3, 0)])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_unframing_verifies_every_block_into_any_strides(shape, layout):
    """Whole-chunk decoding fills C-contiguous and strided buffers, and a flipped bit in any
    block (data or checksum) raises CodecError naming that block."""
    from dosna.io import codecs

    frames = codecs.Framing(CodecSpec.create(checksum=True), np.dtype("f4"))
    chunk = np.random.default_rng(5).standard_normal(shape).astype("f4")
    stored = bytes(memoryview(frames.frame(chunk)).cast("B"))

    def target():
        if layout == "contiguous":
            return np.zeros(shape, "f4")
        return np.zeros(tuple(2 * n + 1 for n in shape), "f4")[tuple(slice(1, 2 * n + 1, 2) for n in shape)]

    out = target()
    frames.unframe_into(stored, out)
    np.testing.assert_array_equal(out, chunk)
    step = frames.block + 4
    for pos in sorted(
        {0, 1, len(stored) // 3, len(stored) // 2, step - 1, step, 2 * step + 7, len(stored) - 1}
    ):
        if not 0 <= pos < len(stored):
            continue
        damaged = bytearray(stored)
        damaged[pos] ^= 0x10
        with pytest.raises(codecs.CodecError, match=f"block {pos // step}"):
            frames.unframe_into(bytes(damaged), target())


def test_ranged_unframing_of_several_blocks_verifies_each():
    """A byte range spanning several blocks comes back exact; damage to any fetched block is caught."""
    from dosna.io import codecs

    frames = codecs.Framing(CodecSpec.create(checksum=True), np.dtype("u1"))
    data = np.random.default_rng(9).integers(0, 256, 5 * frames.block + 123, dtype=np.uint8)
    stored = bytes(memoryview(frames.frame(data)).cast("B"))
    for offset, length in [(10, 3 * frames.block), (frames.block, 2 * frames.block), (100, data.size - 100)]:
        start, size = frames.stored_range(offset, length)
        fetched = stored[start : start + size]
        buffer, skip = frames.unframe_range(fetched, offset, length)
        got = (
            np.frombuffer(buffer, np.uint8, length, skip)
            if not isinstance(buffer, np.ndarray)
            else buffer[skip : skip + length]
        )
        np.testing.assert_array_equal(got, data[offset : offset + length])
        for pos in (0, len(fetched) // 2, len(fetched) - 1):
            damaged = bytearray(fetched)
            damaged[pos] ^= 1
            with pytest.raises(codecs.CodecError, match="checksum mismatch"):
                frames.unframe_range(bytes(damaged), offset, length)
