"""CTranslate2 WhisperSpec -> transformers ``WhisperForConditionalGeneration`` weights and config.

Mapping (see /work/shared/notes/ct2-format.md):
- self-attention ``linear_0`` is the fused [q; k; v] (3d x d), ``linear_1`` the output projection;
  cross-attention ``linear_0`` is q, ``linear_1`` the fused [k; v], ``linear_2`` the output;
- the fused bias stores zeros for k (Whisper's k projection has no bias): checked, then dropped;
- ``decoder/projection/weight`` aliases the token embedding: the output projection is tied;
- both positional tables are stored (encoder sinusoidal 1500 x d, decoder learned 448 x d).
Everything is cast to float32.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from streamrt.errors import ModelLoadError
from streamrt.models.whisper.ct2 import Ct2Model

GELU_CODE = 3  # CTranslate2 ActivationType::GELU
_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


def _count_layers(model: Ct2Model, side: str) -> int:
    found = {int(m.group(2)) for name in model.variables if (m := _LAYER.match(name)) and m.group(1) == side}
    if not found:
        raise ModelLoadError(f"{model.source}: no {side} layers (no '{side}/layer_<n>/' variables)")
    if found != set(range(len(found))):
        raise ModelLoadError(f"{model.source}: {side} layer indices are not 0..n-1: {sorted(found)}")
    return len(found)


def _check_spec(model: Ct2Model) -> None:
    if model.spec != "WhisperSpec":
        raise ModelLoadError(f"{model.source}: spec is {model.spec!r}, expected 'WhisperSpec'")
    for side in ("encoder", "decoder"):
        if model.has(f"{side}/activation") and model.scalar(f"{side}/activation") != GELU_CODE:
            raise ModelLoadError(f"{model.source}: {side} activation code {model.scalar(f'{side}/activation')} is not GELU")
    for flag, want in (("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0), ("decoder/alibi", 0)):
        if model.has(flag) and model.scalar(flag) != want:
            raise ModelLoadError(f"{model.source}: {flag} = {model.scalar(flag)}, Whisper needs {want}")


def whisper_config_kwargs(model: Ct2Model) -> dict[str, Any]:
    """Architecture settings derived from the tensor shapes (and the 0-d head counts)."""
    _check_spec(model)
    conv1 = model.get("encoder/conv1/weight")
    d_model, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    emb = model.get("decoder/embeddings/weight")
    enc_ffn = model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]
    dec_ffn = model.get("decoder/layer_0/ffn/linear_0/weight").shape[0]
    return {
        "vocab_size": int(emb.shape[0]),
        "num_mel_bins": n_mels,
        "d_model": d_model,
        "encoder_layers": _count_layers(model, "encoder"),
        "decoder_layers": _count_layers(model, "decoder"),
        "encoder_attention_heads": model.scalar("encoder/num_heads"),
        "decoder_attention_heads": model.scalar("decoder/num_heads"),
        "encoder_ffn_dim": int(enc_ffn),
        "decoder_ffn_dim": int(dec_ffn),
        "max_source_positions": int(model.get("encoder/position_encodings/encodings").shape[0]),
        "max_target_positions": int(model.get("decoder/position_encodings/encodings").shape[0]),
        "activation_function": "gelu",
        "tie_word_embeddings": True,
    }


def _t(model: Ct2Model, name: str) -> torch.Tensor:
    return torch.from_numpy(model.as_float32(name))


def _split(model: Ct2Model, prefix: str, parts: int, d: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    w = _t(model, f"{prefix}/weight")
    b = _t(model, f"{prefix}/bias")
    if w.shape != (parts * d, d) or b.shape != (parts * d,):
        raise ModelLoadError(
            f"{model.source}: fused {prefix} is {list(w.shape)} / bias {list(b.shape)}, expected [{parts * d}, {d}]"
        )
    return list(w.split(d)), list(b.split(d))


def _attention(model: Ct2Model, src: str, dst: str, d: int, cross: bool) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if cross:
        out[f"{dst}.q_proj.weight"] = _t(model, f"{src}/linear_0/weight")
        out[f"{dst}.q_proj.bias"] = _t(model, f"{src}/linear_0/bias")
        (wk, wv), (bk, bv) = _split(model, f"{src}/linear_1", 2, d)
        out_layer = "linear_2"
    else:
        (wq, wk, wv), (bq, bk, bv) = _split(model, f"{src}/linear_0", 3, d)
        out[f"{dst}.q_proj.weight"], out[f"{dst}.q_proj.bias"] = wq, bq
        out_layer = "linear_1"
    if bk.abs().max().item() != 0.0:
        raise ModelLoadError(
            f"{model.source}: {src} k bias is not zero (max |b| = {bk.abs().max().item():.3g}); "
            "Whisper's k projection has no bias, so this is not a Whisper model"
        )
    out[f"{dst}.k_proj.weight"] = wk
    out[f"{dst}.v_proj.weight"], out[f"{dst}.v_proj.bias"] = wv, bv
    out[f"{dst}.out_proj.weight"] = _t(model, f"{src}/{out_layer}/weight")
    out[f"{dst}.out_proj.bias"] = _t(model, f"{src}/{out_layer}/bias")
    return out


def _norm(model: Ct2Model, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": _t(model, f"{src}/gamma"), f"{dst}.bias": _t(model, f"{src}/beta")}


def _ffn(model: Ct2Model, src: str, dst: str) -> dict[str, torch.Tensor]:
    out = _norm(model, f"{src}/layer_norm", f"{dst}.final_layer_norm")
    for ct2_name, hf_name in (("linear_0", "fc1"), ("linear_1", "fc2")):
        out[f"{dst}.{hf_name}.weight"] = _t(model, f"{src}/{ct2_name}/weight")
        out[f"{dst}.{hf_name}.bias"] = _t(model, f"{src}/{ct2_name}/bias")
    return out


def hf_state_dict(model: Ct2Model, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The float32 state dict of WhisperForConditionalGeneration (without the tied ``proj_out``)."""
    d = kwargs["d_model"]
    if model.aliases.get("decoder/projection/weight", "decoder/embeddings/weight") != "decoder/embeddings/weight":
        raise ModelLoadError(f"{model.source}: decoder/projection/weight is not tied to the token embedding")
    if "decoder/projection/weight" in model.variables:
        same = np.array_equal(model.get("decoder/projection/weight"), model.get("decoder/embeddings/weight"))
        if not same:
            raise ModelLoadError(f"{model.source}: untied output projection is not supported")
    sd: dict[str, torch.Tensor] = {}
    for name in ("conv1", "conv2"):
        sd[f"model.encoder.{name}.weight"] = _t(model, f"encoder/{name}/weight")
        sd[f"model.encoder.{name}.bias"] = _t(model, f"encoder/{name}/bias")
    sd["model.encoder.embed_positions.weight"] = _t(model, "encoder/position_encodings/encodings")
    for i in range(kwargs["encoder_layers"]):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        sd.update(_norm(model, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"))
        sd.update(_attention(model, f"{src}/self_attention", f"{dst}.self_attn", d, cross=False))
        sd.update(_ffn(model, f"{src}/ffn", dst))
    sd.update(_norm(model, "encoder/layer_norm", "model.encoder.layer_norm"))
    sd["model.decoder.embed_tokens.weight"] = _t(model, "decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = _t(model, "decoder/position_encodings/encodings")
    for i in range(kwargs["decoder_layers"]):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        sd.update(_norm(model, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"))
        sd.update(_attention(model, f"{src}/self_attention", f"{dst}.self_attn", d, cross=False))
        sd.update(_norm(model, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm"))
        sd.update(_attention(model, f"{src}/attention", f"{dst}.encoder_attn", d, cross=True))
        sd.update(_ffn(model, f"{src}/ffn", dst))
    sd.update(_norm(model, "decoder/layer_norm", "model.decoder.layer_norm"))
    return sd


def build_hf_model(model: Ct2Model, extra_config: dict[str, Any]):
    """A float32, eval-mode WhisperForConditionalGeneration holding the CTranslate2 weights.

    ``extra_config`` adds token ids (pad/bos/eos/decoder_start) and suppress lists to the config.
    """
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    kwargs = whisper_config_kwargs(model)
    sd = hf_state_dict(model, kwargs)
    config = WhisperConfig(**kwargs, **extra_config)
    with torch.device("meta"):
        hf = WhisperForConditionalGeneration(config)
    missing, unexpected = hf.load_state_dict(sd, strict=False, assign=True)
    missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise ModelLoadError(f"{model.source}: conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    hf.proj_out.weight = hf.model.decoder.embed_tokens.weight
    leftover = [n for n, t in list(hf.named_parameters()) + list(hf.named_buffers()) if t.is_meta]
    if leftover:
        raise ModelLoadError(f"{model.source}: conversion left tensors unset: {leftover[:5]}")
    return hf.eval()
