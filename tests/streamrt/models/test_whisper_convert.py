"""CTranslate2 WhisperSpec -> transformers, checked by a round trip through a random tiny model.

The test writes a random WhisperForConditionalGeneration out in the CTranslate2 layout (fused
[q; k; v] with a zero k bias, fused cross [k; v], tied projection as an alias, stored positional
tables) with its own code, converts it back, and requires the same tensors and the same logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrt.errors import ModelLoadError
from streamrt.models.whisper.convert import build_hf_model, whisper_config_kwargs
from streamrt.models.whisper.ct2 import parse_ct2_model
from tests.streamrt.models.ct2_writer import D, HEADS, MELS, VOCAB, ct2_bytes
from tests.streamrt.models.ct2_writer import random_whisper as _random_whisper
from tests.streamrt.models.ct2_writer import whisper_to_ct2 as _to_ct2

def test_config_is_derived_from_the_tensors():
    kwargs = whisper_config_kwargs(parse_ct2_model(_to_ct2(_random_whisper(enc_layers=2, dec_layers=3))))
    assert kwargs["encoder_layers"] == 2 and kwargs["decoder_layers"] == 3  # layer_norm is not a layer
    assert (kwargs["d_model"], kwargs["num_mel_bins"], kwargs["vocab_size"]) == (D, MELS, VOCAB)
    assert (kwargs["encoder_ffn_dim"], kwargs["decoder_ffn_dim"]) == (16, 12)
    assert (kwargs["max_source_positions"], kwargs["max_target_positions"]) == (6, 5)
    assert kwargs["encoder_attention_heads"] == kwargs["decoder_attention_heads"] == HEADS


def test_round_trip_gives_the_same_tensors_and_logits():
    ref = _random_whisper()
    got = build_hf_model(parse_ct2_model(_to_ct2(ref)), dict(pad_token_id=1, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2))
    ref_sd = {k: v.half().float() for k, v in ref.state_dict().items()}  # the file holds float16
    got_sd = got.state_dict()
    assert set(got_sd) == set(ref_sd)
    for name, tensor in ref_sd.items():
        assert torch.equal(got_sd[name], tensor), name
    assert got.proj_out.weight is got.model.decoder.embed_tokens.weight
    assert all(p.dtype == torch.float32 for p in got.parameters()) and not got.training
    ref.load_state_dict(ref_sd)
    mel = torch.randn(1, MELS, 12)
    ids = torch.tensor([[2, 5, 7, 3]])
    with torch.no_grad():
        a = ref(input_features=mel, decoder_input_ids=ids).logits
        b = got(input_features=mel, decoder_input_ids=ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_nonzero_k_bias_is_not_whisper():
    with pytest.raises(ModelLoadError, match="k bias is not zero"):
        build_hf_model(parse_ct2_model(_to_ct2(_random_whisper(), k_bias=0.5)), dict(pad_token_id=1))


def test_other_spec_is_rejected():
    model = parse_ct2_model(ct2_bytes({"w": np.zeros(1, np.float32)}, spec="TransformerSpec"))
    with pytest.raises(ModelLoadError, match="'TransformerSpec', expected 'WhisperSpec'"):
        whisper_config_kwargs(model)
