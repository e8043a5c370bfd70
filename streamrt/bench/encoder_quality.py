"""What the streaming choices cost in quality: WER of greedy tiny.en decoding with each feature floor
rule and each encoder mode, on the same utterances (each at most 30 s, one window).

    python -m streamrt.bench.encoder_quality DATA.tsv [--model tiny.en] [--limit N]

Decoding stops at 128 positions (sentences; a hallucination loop is cut there). DATA.tsv has columns ``id  audio  reference`` (audio paths relative to the TSV). Rows:
- ``offline global-max``: Whisper's features (clamp at global max - 8), padded to 30 s, full encoder
  (= ``transcribe_offline``).
- ``offline running-max``: the streaming floor rule, otherwise the same: isolates the floor's effect.
- ``unpadded full``: running-max features, encoder over the real frames only (the re-encode mode at
  end of stream; no 30 s padding).
- ``block-causal`` / ``sliding`` / ``block-lookahead``: the cached modes at end of stream, unpadded
  (block-lookahead: 0.5 s groups frozen with 0.5 s or 1 s of look-ahead, as 0.5 s steps freeze them).
- ``+silence tail``: the same frames followed by rows T..1499 of ``silence_tail`` (a fixed encoding
  of zero features, computed once per model).
The encoder output goes to ``greedy_decode`` of streamrt.models.whisper.offline (the offline decoder),
so only the encoder/features differ between rows.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch


def _configs(model):
    from streamrt.encoders.factory import make_encoder

    return {
        "unpadded full": make_encoder(model, "reencode"),
        "block-causal 0.5s/10s": make_encoder(model, "block-causal", chunk_frames=25, left_frames=500),
        "block-causal 0.2s/10s": make_encoder(model, "block-causal", chunk_frames=10, left_frames=500),
        "sliding 10s la2": make_encoder(model, "sliding", left_frames=500, lookahead_frames=2),
        "block-lookahead 0.5s+0.5s": make_encoder(model, "block-lookahead", chunk_frames=25, lookahead_frames=25),
        "block-lookahead 0.5s+1s": make_encoder(model, "block-lookahead", chunk_frames=25, lookahead_frames=50),
    }


def _padded_offline(bundle, audio: np.ndarray, floor: str) -> torch.Tensor:
    from streamrt.features.logmel import HOP, log_mel_offline

    mel = log_mel_offline(np.concatenate([audio, np.zeros(HOP, np.float32)]), bundle.n_mels, floor=floor)
    mel = torch.nn.functional.pad(mel[:, :3000], (0, max(0, 3000 - mel.shape[1])))
    with torch.inference_mode():
        return bundle.model.model.encoder(mel[None]).last_hidden_state


def run(tsv: Path, model_name: str = "tiny.en", limit: int | None = None) -> dict[str, float]:
    from metrics.quality import wer
    from streamrt.audio import load_audio
    from streamrt.features.logmel import log_mel_offline
    from streamrt.models.whisper import load_whisper
    from streamrt.encoders.whisper import silence_tail
    from streamrt.models.whisper.offline import greedy_decode

    import dataclasses

    # one sentence per row: cap decoding so a hallucination loop costs 120 tokens, not 448
    bundle = load_whisper(model_name)
    bundle = dataclasses.replace(bundle, max_target_positions=min(bundle.max_target_positions, 128))
    prompt = bundle.sot_sequence("transcribe", "en" if bundle.multilingual else None)
    rows = list(csv.DictReader(open(tsv, encoding="utf-8"), delimiter="\t"))[:limit]
    hyps: dict[str, list[str]] = {}
    refs = []
    encoders = _configs(bundle.model)
    silence = silence_tail(bundle.model)  # streamrt.encoders.whisper.silence_tail
    for row in rows:
        audio = load_audio(tsv.parent / row["audio"])
        if len(audio) > 16000 * 29.5:
            continue
        refs.append(row["reference"])
        encs = {
            "offline global-max": _padded_offline(bundle, audio, "global-max"),
            "offline running-max": _padded_offline(bundle, audio, "running-max"),
        }
        mel = log_mel_offline(audio, bundle.n_mels)
        for name, enc in encoders.items():
            frames = enc.step(mel, enc.create_state(), final=True).frames
            encs[name] = frames[None]
            encs[name + " +silence tail"] = torch.cat([frames, silence[frames.shape[0] :]])[None]
        for name, e in encs.items():
            hyps.setdefault(name, []).append(bundle.tokenizer.decode(greedy_decode(bundle, e, prompt)).strip())
    return {name: wer(h, refs) for name, h in hyps.items()} | {"utterances": float(len(refs))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tsv", type=Path)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    for name, value in run(a.tsv, a.model, a.limit).items():
        print(f"{name:24s} {value:6.2f}")


if __name__ == "__main__":
    main()
