"""mobilevision.convert.tf_checkpoint reads TF tensor bundles exactly as tensorflow does, with no tensorflow.

The fixture checkpoints under tests/fixtures/tf/ were written by the TF reference code (tools/tf_reference/
make_fixtures.py); `tf_load_checkpoint.npz.xz` beside each is tensorflow's own reading of it.
"""

from __future__ import annotations

import io
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest

from mobilevision.convert.tf_checkpoint import crc32c, read_tf_checkpoint, read_tf_index, unmask_crc
from mobilevision.errors import WeightsError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
# The fixtures with tensorflow's own reading beside them (the SSDLite one has none: its parity test reads it).
MODELS = sorted(p.name for p in FIXTURES.glob("*") if (p / "tf_load_checkpoint.npz.xz").is_file())


def unpack(model: str, tmp_path: Path) -> Path:
    """Copy a fixture checkpoint to `tmp_path`, its data shard decompressed; return the prefix."""
    src = FIXTURES / model
    shutil.copy(src / "model.ckpt.index", tmp_path / "model.ckpt.index")
    with lzma.open(src / "model.ckpt.data-00000-of-00001.xz") as packed:
        (tmp_path / "model.ckpt.data-00000-of-00001").write_bytes(packed.read())
    return tmp_path / "model.ckpt"


def test_fixtures_exist() -> None:
    assert MODELS == ["deeplabv3_mnv2_050_os16", "mobilenet_v2_035_classifier"]


def test_crc32c_known_values() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4


def test_unmask_inverts_leveldb_mask() -> None:
    crc = 0x12345678
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert unmask_crc(masked) == crc


@pytest.mark.parametrize("model", MODELS)
def test_equals_tensorflows_reading(model: str, tmp_path: Path) -> None:
    ours = read_tf_checkpoint(unpack(model, tmp_path))
    with lzma.open(FIXTURES / model / "tf_load_checkpoint.npz.xz") as packed:
        raw = packed.read()
    with np.load(io.BytesIO(raw)) as dump:
        theirs = {name: dump[name] for name in dump.files}
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype, name
        assert ours[name].shape == value.shape, name
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


@pytest.mark.parametrize("model", MODELS)
def test_accepts_index_or_data_path(model: str, tmp_path: Path) -> None:
    prefix = unpack(model, tmp_path)
    names = set(read_tf_checkpoint(prefix.with_name("model.ckpt.index"), check_crc=False))
    assert names == set(read_tf_checkpoint(prefix.with_name("model.ckpt.data-00000-of-00001"), check_crc=False))


def test_index_entries_describe_the_shard(tmp_path: Path) -> None:
    prefix = unpack("mobilenet_v2_035_classifier", tmp_path)
    num_shards, entries = read_tf_index(prefix)
    assert num_shards == 1
    assert [e.name for e in entries] == sorted(e.name for e in entries)  # an SSTable is key-ordered
    size = (tmp_path / "model.ckpt.data-00000-of-00001").stat().st_size
    assert max(e.offset + e.size for e in entries) == size
    assert all(e.crc32c is not None and not e.sliced for e in entries)


def test_missing_data_file(tmp_path: Path) -> None:
    prefix = unpack("mobilenet_v2_035_classifier", tmp_path)
    (tmp_path / "model.ckpt.data-00000-of-00001").unlink()
    with pytest.raises(WeightsError, match=r"model\.ckpt\.data-00000-of-00001: no such file"):
        read_tf_checkpoint(prefix)


def test_truncated_data_file(tmp_path: Path) -> None:
    prefix = unpack("mobilenet_v2_035_classifier", tmp_path)
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"data-00000-of-00001: truncated: variable '.+' needs bytes \d+\.\.\d+"):
        read_tf_checkpoint(prefix)


def test_corrupt_data_fails_crc(tmp_path: Path) -> None:
    prefix = unpack("mobilenet_v2_035_classifier", tmp_path)
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="fails its crc32c check"):
        read_tf_checkpoint(prefix)


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"model\.ckpt\.index: no such file"):
        read_tf_checkpoint(tmp_path / "model.ckpt")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[:-1], "table magic"),
        (lambda raw: raw[:20], "shorter than the 48-byte table footer"),
        (lambda raw: bytes([raw[0] ^ 0x55]) + raw[1:], "crc32c"),
        (lambda raw: b"\x80\x03]q\x00." + bytes(60), "table magic"),  # a pickle is not an index
    ],
    ids=["no-magic", "short", "flipped-byte", "pickle"],
)
def test_bad_index(tmp_path: Path, damage, message: str) -> None:
    prefix = unpack("mobilenet_v2_035_classifier", tmp_path)
    index = tmp_path / "model.ckpt.index"
    index.write_bytes(damage(index.read_bytes()))
    with pytest.raises(WeightsError, match=rf"model\.ckpt\.index: not a readable TF checkpoint index.*{message}"):
        read_tf_checkpoint(prefix)


@pytest.mark.parametrize("model", MODELS)
def test_against_tensorflow_when_installed(model: str, tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    prefix = unpack(model, tmp_path)
    reader = tf.train.load_checkpoint(str(prefix))
    ours = read_tf_checkpoint(prefix)
    assert sorted(ours) == sorted(reader.get_variable_to_shape_map())
    for name in ours:
        np.testing.assert_array_equal(ours[name], reader.get_tensor(name), err_msg=name)
