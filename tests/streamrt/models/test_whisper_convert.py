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
from tests.streamrt.models.ct2_writer import ct2_bytes

D, HEADS, VOCAB, MELS = 8, 2, 24, 4


def _random_whisper(enc_layers=2, dec_layers=3):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(
        vocab_size=VOCAB, num_mel_bins=MELS, d_model=D, encoder_layers=enc_layers, decoder_layers=dec_layers,
        encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=16, decoder_ffn_dim=12,
        max_source_positions=6, max_target_positions=5, pad_token_id=1, bos_token_id=1, eos_token_id=1,
        decoder_start_token_id=2, tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)  # layer norms and biases away from their 1/0 init
        for layer in [*model.model.encoder.layers, *model.model.decoder.layers]:
            assert layer.self_attn.k_proj.bias is None
    return model


def _to_ct2(model, *, k_bias: float = 0.0) -> bytes:
    sd = {k: v.detach().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}
    zeros = np.full(D, k_bias, np.float16)

    def attn(src: str, dst: str, cross: bool):
        q, k, v, o = (f"{src}.{n}_proj" for n in "qkvo")
        o = f"{src}.out_proj"
        if cross:
            out[f"{dst}/linear_0/weight"], out[f"{dst}/linear_0/bias"] = sd[f"{q}.weight"], sd[f"{q}.bias"]
            out[f"{dst}/linear_1/weight"] = np.concatenate([sd[f"{k}.weight"], sd[f"{v}.weight"]])
            out[f"{dst}/linear_1/bias"] = np.concatenate([zeros, sd[f"{v}.bias"]])
            last = "linear_2"
        else:
            out[f"{dst}/linear_0/weight"] = np.concatenate([sd[f"{q}.weight"], sd[f"{k}.weight"], sd[f"{v}.weight"]])
            out[f"{dst}/linear_0/bias"] = np.concatenate([sd[f"{q}.bias"], zeros, sd[f"{v}.bias"]])
            last = "linear_1"
        out[f"{dst}/{last}/weight"], out[f"{dst}/{last}/bias"] = sd[f"{o}.weight"], sd[f"{o}.bias"]

    def norm(src: str, dst: str):
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def ffn(src: str, dst: str):
        norm(f"{src}.final_layer_norm", f"{dst}/ffn/layer_norm")
        for hf, ct in (("fc1", "linear_0"), ("fc2", "linear_1")):
            out[f"{dst}/ffn/{ct}/weight"], out[f"{dst}/ffn/{ct}/bias"] = sd[f"{src}.{hf}.weight"], sd[f"{src}.{hf}.bias"]

    e, d = "model.encoder", "model.decoder"
    for side in ("encoder", "decoder"):
        out[f"{side}/num_heads"] = np.array(HEADS, np.int16)
        out[f"{side}/activation"] = np.array(3, np.int8)
    out["decoder/pre_norm"] = np.array(1, np.int8)
    for c in ("conv1", "conv2"):
        out[f"encoder/{c}/weight"], out[f"encoder/{c}/bias"] = sd[f"{e}.{c}.weight"], sd[f"{e}.{c}.bias"]
    out["encoder/position_encodings/encodings"] = sd[f"{e}.embed_positions.weight"]
    for i in range(len(model.model.encoder.layers)):
        norm(f"{e}.layers.{i}.self_attn_layer_norm", f"encoder/layer_{i}/self_attention/layer_norm")
        attn(f"{e}.layers.{i}.self_attn", f"encoder/layer_{i}/self_attention", cross=False)
        ffn(f"{e}.layers.{i}", f"encoder/layer_{i}")
    norm(f"{e}.layer_norm", "encoder/layer_norm")
    out["decoder/embeddings/weight"] = sd[f"{d}.embed_tokens.weight"]
    out["decoder/position_encodings/encodings"] = sd[f"{d}.embed_positions.weight"]
    for i in range(len(model.model.decoder.layers)):
        p, q = f"{d}.layers.{i}", f"decoder/layer_{i}"
        norm(f"{p}.self_attn_layer_norm", f"{q}/self_attention/layer_norm")
        attn(f"{p}.self_attn", f"{q}/self_attention", cross=False)
        norm(f"{p}.encoder_attn_layer_norm", f"{q}/attention/layer_norm")
        attn(f"{p}.encoder_attn", f"{q}/attention", cross=True)
        ffn(p, q)
    norm(f"{d}.layer_norm", "decoder/layer_norm")
    return ct2_bytes(out, {"decoder/projection/weight": "decoder/embeddings/weight"})


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
