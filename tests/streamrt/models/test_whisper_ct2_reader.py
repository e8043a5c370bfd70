"""The model.bin reader on small crafted files: exact consumption, and each malformation named."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from streamrt.errors import ModelLoadError
from streamrt.models.whisper.ct2 import parse_ct2_model, read_ct2_model
from tests.streamrt.models.ct2_writer import ct2_bytes


def _sample() -> tuple[dict[str, np.ndarray], bytes]:
    variables = {
        "decoder/embeddings/weight": np.arange(12, dtype=np.float16).reshape(4, 3),
        "encoder/num_heads": np.array(6, dtype=np.int16),
        "decoder/activation": np.array(3, dtype=np.int8),
        "encoder/conv1/bias": np.array([1.5, -2.0], dtype=np.float32),
    }
    return variables, ct2_bytes(variables, {"decoder/projection/weight": "decoder/embeddings/weight"})


def test_reads_every_variable_and_alias():
    variables, data = _sample()
    model = parse_ct2_model(data)
    assert (model.binary_version, model.spec, model.revision) == (6, "WhisperSpec", 3)
    assert set(model.variables) == set(variables)
    for name, arr in variables.items():
        assert model.get(name).dtype == arr.dtype
        np.testing.assert_array_equal(model.get(name), arr)
    assert model.get("decoder/projection/weight") is model.get("decoder/embeddings/weight")
    assert model.scalar("encoder/num_heads") == 6
    assert model.as_float32("decoder/embeddings/weight").dtype == np.float32


def test_reads_from_file(tmp_path):
    _, data = _sample()
    (tmp_path / "model.bin").write_bytes(data)
    assert "encoder/conv1/bias" in read_ct2_model(tmp_path / "model.bin").variables


def test_missing_file_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot read"):
        read_ct2_model(tmp_path / "nope.bin")


@pytest.mark.parametrize("version", [5, 7, 0x46554747])
def test_wrong_version_or_magic_is_named(version):
    _, data = _sample()
    bad = struct.pack("<I", version) + data[4:]
    with pytest.raises(ModelLoadError, match=f"version {version}"):
        parse_ct2_model(bad)


def test_every_truncation_is_reported_as_truncated():
    _, data = _sample()
    for cut in range(len(data)):
        with pytest.raises(ModelLoadError) as info:
            parse_ct2_model(data[:cut])
        assert "truncated at byte" in str(info.value), (cut, str(info.value))


def test_trailing_bytes_are_rejected_with_the_count():
    _, data = _sample()
    with pytest.raises(ModelLoadError, match="3 trailing bytes"):
        parse_ct2_model(data + b"\0\0\0")


def test_two_models_concatenated_are_rejected():
    _, data = _sample()
    with pytest.raises(ModelLoadError, match="trailing bytes"):
        parse_ct2_model(data + data)


def test_unknown_dtype_is_named():
    data = ct2_bytes({"w": np.zeros(2, np.float32)}, dtype_override={"w": 9})
    with pytest.raises(ModelLoadError, match=r"'w' has unknown dtype code 9"):
        parse_ct2_model(data)


def test_byte_count_must_match_the_shape():
    good = ct2_bytes({"w": np.zeros((2, 2), np.float32)})
    # the byte count follows the dtype byte; declare 12 bytes instead of 16 (data shortened to match)
    pos = good.index(struct.pack("<BI", 0, 16))
    bad = good[:pos] + struct.pack("<BI", 0, 12) + good[pos + 5 : pos + 5 + 12] + good[pos + 5 + 16 :]
    with pytest.raises(ModelLoadError, match="declares 12 bytes but shape \\[2, 2\\]"):
        parse_ct2_model(bad)


def test_alias_to_a_missing_variable_is_rejected():
    data = ct2_bytes({"w": np.zeros(1, np.float32)}, {"p": "missing"})
    with pytest.raises(ModelLoadError, match="'p' points to missing variable 'missing'"):
        parse_ct2_model(data)


def test_string_without_nul_is_rejected():
    data = bytearray(ct2_bytes({"w": np.zeros(1, np.float32)}))
    data[4 + 2 + len("WhisperSpec")] = ord("!")  # the spec name's terminator
    with pytest.raises(ModelLoadError, match="spec name .* does not end with NUL"):
        parse_ct2_model(bytes(data))


def test_bfloat16_widens_exactly():
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    words = (values.view(np.uint32) >> 16).astype(np.uint16)
    model = parse_ct2_model(ct2_bytes({"w": words}, dtype_override={"w": 5}))
    np.testing.assert_array_equal(model.as_float32("w"), values)
