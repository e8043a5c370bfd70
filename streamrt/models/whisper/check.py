"""Measure a packaged model against CTranslate2: ``python -m streamrt.models.whisper.check tiny.en``.

Prints: conversion time (into a fresh temporary cache), cached load time (best of 3), the largest
encoder-output difference from ``ctranslate2.models.Whisper.encode`` on each clip's first window,
and greedy-token agreement with faster-whisper (same model.bin, float32, beam 1, no timestamps,
no fallback, no previous text, no VAD). Needs the dev extras (faster-whisper, ctranslate2) and,
for the synthesized clips, espeak-ng and flite. Reads clips from moonshine-voice's assets.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please remember to bring your passport and your ticket to the airport tomorrow morning.",
    "Please call Stella. Ask her to bring these things with her from the store.",
    "The meeting has been moved to Thursday afternoon at three o'clock.",
    "Our latency budget is two hundred milliseconds from speech to caption.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "Turn left at the second traffic light, then keep going for about a mile.",
    "Streaming speech recognition commits words only when the policy is confident.",
]


def clips(folder: Path) -> dict[str, np.ndarray]:
    """Moonshine recordings plus each sentence spoken by espeak-ng and flite (where installed)."""
    from streamrt.audio import load_audio

    out: dict[str, np.ndarray] = {}
    spec = importlib.util.find_spec("moonshine_voice")
    if spec is not None:
        assets = Path(next(iter(spec.submodule_search_locations))) / "assets"
        for wav in sorted(assets.glob("*.wav")):
            if wav.stat().st_size > 100_000:  # skip the short notification sounds
                out[wav.stem] = load_audio(wav)
    for i, text in enumerate(SENTENCES):
        for tool in ("espeak-ng", "flite"):
            if shutil.which(tool) is None:
                continue
            wav = folder / f"{tool}_{i}.wav"
            cmd = [tool, "-w", str(wav), text] if tool == "espeak-ng" else [tool, "-t", text, "-o", str(wav)]
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            out[wav.stem] = load_audio(wav)
    return out


def measure(name: str, *, threads: int = 1) -> dict:
    import ctranslate2
    import torch
    from faster_whisper import WhisperModel

    from streamrt.models.whisper.load import ensure_converted, load_whisper
    from streamrt.models.whisper.offline import _windows, encode_window, log_mel_recording, transcribe_offline_tokens
    from streamrt.models.whisper.packages import packaged_ct2_dir

    torch.set_num_threads(threads)
    report: dict = {"model": name, "torch_threads": threads}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ensure_converted(name, Path(tmp) / "cache")
        report["conversion_s"] = round(time.perf_counter() - start, 2)
        loads = []
        for _ in range(3):
            start = time.perf_counter()
            bundle = load_whisper(name, cache_dir=Path(tmp) / "cache")
            loads.append(time.perf_counter() - start)
        report["cached_load_s"] = round(min(loads), 3)
        ct2_dir = str(packaged_ct2_dir(name, Path(tmp) / "cache"))
        ct2_model = ctranslate2.models.Whisper(ct2_dir, device="cpu", compute_type="float32", intra_threads=threads)
        fw = WhisperModel(ct2_dir, device="cpu", compute_type="float32", cpu_threads=threads)
        folder = Path(tmp) / "clips"
        folder.mkdir()
        rows = []
        for clip_name, audio in clips(folder).items():
            window = _windows(log_mel_recording(audio, bundle.n_mels))[0]
            ours_enc = encode_window(bundle, window).numpy()
            ref_enc = np.array(ct2_model.encode(ctranslate2.StorageView.from_array(window[None].numpy().copy())))
            lang = None if not bundle.multilingual else "en"
            ours = [t for w in transcribe_offline_tokens(bundle, audio, language=lang) for t in w]
            segments, _ = fw.transcribe(
                audio, beam_size=1, temperature=0.0, without_timestamps=True, condition_on_previous_text=False,
                vad_filter=False, no_speech_threshold=None, language=lang,
            )
            ref = [t for s in segments for t in s.tokens]
            same_prefix = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), min(len(ours), len(ref)))
            rows.append({
                "clip": clip_name,
                "seconds": round(len(audio) / 16000, 2),
                "encoder_max_abs_diff": float(np.abs(ours_enc - ref_enc).max()),
                "encoder_max_abs": float(np.abs(ref_enc).max()),
                "tokens": len(ref),
                "identical": ours == ref,
                "agreeing_prefix": same_prefix,
            })
    report["clips"] = rows
    report["identical_clips"] = sum(r["identical"] for r in rows)
    report["tokens_total"] = sum(r["tokens"] for r in rows)
    report["tokens_agreeing_prefix"] = sum(r["agreeing_prefix"] for r in rows)
    report["encoder_max_abs_diff"] = max(r["encoder_max_abs_diff"] for r in rows)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["tiny.en", "base"])
    parser.add_argument("--threads", type=int, default=1, help="torch and CTranslate2 threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    reports = []
    for name in args.models:
        rep = measure(name, threads=args.threads)
        reports.append(rep)
        for r in rep["clips"]:
            print(
                f"{name:8} {r['clip']:22} {r['seconds']:6.2f}s enc_diff {r['encoder_max_abs_diff']:.2e} "
                f"(|enc| {r['encoder_max_abs']:.1f}) tokens {r['tokens']:4d} {'identical' if r['identical'] else 'DIFFERENT'}"
            )
        print(
            f"{name}: conversion {rep['conversion_s']} s, cached load {rep['cached_load_s']} s, "
            f"{rep['identical_clips']}/{len(rep['clips'])} clips token-identical, "
            f"{rep['tokens_agreeing_prefix']}/{rep['tokens_total']} tokens in agreeing prefixes, "
            f"max encoder diff {rep['encoder_max_abs_diff']:.2e}"
        )
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
