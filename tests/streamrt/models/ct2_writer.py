"""Test helpers: write CTranslate2 model.bin bytes (binary version 6) from arrays, independently of
the reader, following the layout in /work/shared/notes/ct2-format.md; a random tiny Whisper in
that layout (the inverse of the conversion, written separately from it)."""

from __future__ import annotations

import struct

import numpy as np
import torch

CODES = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3, np.dtype("float16"): 4}


def ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def ct2_bytes(
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    *,
    version: int = 6,
    spec: str = "WhisperSpec",
    revision: int = 3,
    dtype_override: dict[str, int] | None = None,
) -> bytes:
    out = [struct.pack("<I", version), ct2_string(spec), struct.pack("<II", revision, len(variables))]
    for name, arr in variables.items():
        arr = np.array(arr, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        code = (dtype_override or {}).get(name, CODES.get(arr.dtype))
        out += [ct2_string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape)]
        out += [struct.pack("<BI", code, arr.nbytes), arr.astype(arr.dtype.newbyteorder("<")).tobytes()]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [ct2_string(alias), ct2_string(target)]
    return b"".join(out)


D, HEADS, VOCAB, MELS = 8, 2, 24, 4


def random_whisper(enc_layers=2, dec_layers=3, vocab=VOCAB, pad_id=1, start_id=2):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    """A random tiny WhisperForConditionalGeneration (every weight ~N(0, 0.3))."""
    torch.manual_seed(0)
    cfg = WhisperConfig(
        vocab_size=vocab, num_mel_bins=MELS, d_model=D, encoder_layers=enc_layers, decoder_layers=dec_layers,
        encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=16, decoder_ffn_dim=12,
        max_source_positions=6, max_target_positions=5, pad_token_id=pad_id, bos_token_id=pad_id, eos_token_id=pad_id,
        decoder_start_token_id=start_id, tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)  # layer norms and biases away from their 1/0 init
        for layer in [*model.model.encoder.layers, *model.model.decoder.layers]:
            assert layer.self_attn.k_proj.bias is None
    return model


def whisper_to_ct2(model, *, k_bias: float = 0.0) -> bytes:
    """The model in CTranslate2's WhisperSpec layout, written by this test code (not the reader's)."""
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
