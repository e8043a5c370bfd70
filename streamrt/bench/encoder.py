"""Encoder step cost vs stream position, for every encoder mode (``streamrt bench encoder``).

For each mode one session is driven to each position (10, 20, 60, 600 s by default) in large steps,
then ``repeats`` rounds time one chunk step of ``chunk_ms`` on every session in turn (so load changes
on a shared machine hit all positions alike); the table reports the fastest (on a shared machine
the least noisy estimate of a step's own cost), the JSON also the median. Whisper's absolute
positions end at 30 s, so every mode trims its window the same way on long streams: when the next
step would not fit, the window is cut to its last ``keep_s`` seconds (``trim``), as a streaming
decoder does at a committed boundary; the trim is timed apart (``trim_ms``), not inside the step.
A cached step's cost depends on its cache (left context), not on the position; re-encode's grows with
the window (up to 30 s) and then saw-tooths with the trims.

The input is random mel frames: the cost of a step does not depend on the values.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

DEFAULT_POSITIONS_S = (10.0, 20.0, 60.0, 600.0)  # 20 s: re-encode on a large window, no trim while timed


@dataclass(frozen=True)
class BenchSettings:
    model: str = "tiny.en"  # "tiny.en" (packaged weights; random with its shape if missing) or "random"
    positions_s: tuple[float, ...] = DEFAULT_POSITIONS_S
    chunk_ms: float = 500.0  # audio per timed step
    repeats: int = 9  # timed steps per position (best and median reported)
    keep_s: float = 10.0  # window kept by a trim
    left_s: float = 10.0  # left context of the cached attention modes
    lookahead_frames: int = 2  # per layer, sliding mode
    threads: int = 1  # torch intra-op threads (1 = stable numbers on a shared machine)
    modes: tuple[str, ...] = ("block-causal", "sliding", "conformer", "reencode", "reencode-30s")


@dataclass(frozen=True)
class ModeResult:
    mode: str
    settings: str
    step_ms: dict  # position_s -> fastest ms of one chunk step
    median_ms: dict  # position_s -> median ms
    window_s: dict  # position_s -> window length (s) before the timed steps
    trim_ms: float | None  # mean ms of one trim (re-based window), None if none happened
    ratio: float  # step at the last position / step at the first


def tiny_shaped_random_encoder(seed: int = 0) -> torch.nn.Module:
    """A random-init WhisperEncoder with tiny(.en)'s shapes (4 layers, d_model 384, 6 heads, 1500 positions)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    cfg = WhisperConfig(
        d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536, num_mel_bins=80,
        max_source_positions=1500, vocab_size=51865,
    )  # fmt: skip
    return WhisperEncoder(cfg).eval()


def load_model(name: str) -> tuple[torch.nn.Module, str]:
    """(model, description). Falls back to random weights of the same shape when tiny.en is missing."""
    if name == "random":
        return tiny_shaped_random_encoder(), "random weights, tiny.en shape"
    try:
        from streamrt.models.whisper import load_whisper

        return load_whisper(name).model, f"{name} weights"
    except Exception as err:  # noqa: BLE001 - any load failure means "use random weights", said in the output
        return tiny_shaped_random_encoder(), f"random weights, tiny.en shape ({name} not loadable: {err})"


def _encoders(whisper_model, s: BenchSettings):
    from streamrt.encoders.conformer import CacheAwareConformer, ConformerConfig
    from streamrt.encoders.factory import make_encoder

    left = int(s.left_s * 50)
    chunk = max(1, int(s.chunk_ms / 20))
    yield "block-causal", f"chunk {chunk} fr, left {left} fr", make_encoder(
        whisper_model, "block-causal", chunk_frames=chunk, left_frames=left
    )
    yield "sliding", f"left {left} fr, look-ahead {s.lookahead_frames} fr/layer", make_encoder(
        whisper_model, "sliding", left_frames=left, lookahead_frames=s.lookahead_frames
    )
    torch.manual_seed(0)
    cfg = ConformerConfig(
        d_model=384, n_heads=6, n_layers=4, subsampling=2, chunk_frames=chunk, left_frames=left,
        max_window_frames=1500,
    )  # fmt: skip
    yield "conformer", f"random d384x4, chunk {chunk} fr, left {left} fr", CacheAwareConformer(cfg).eval()
    yield "reencode", "full attention over the window", make_encoder(whisper_model, "reencode")
    yield "reencode-30s", "window padded to 30 s (faster-whisper)", make_encoder(
        whisper_model, "reencode", pad_to_window=True
    )


def _step_timed(enc, state, mel: torch.Tensor, keep_frames: int, trims: list[float]) -> float:
    out_frames = int(mel.shape[1] * 10 / enc.frame_ms) + min(64, enc.max_window_frames // 8)
    if enc.window_frames(state) + out_frames > enc.max_window_frames:
        t0 = time.perf_counter()
        enc.trim(state, min(keep_frames, enc.window_frames(state)))
        trims.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    enc.step(mel, state)
    return time.perf_counter() - t0


def bench_mode(enc, s: BenchSettings) -> tuple[dict, dict, dict, float | None]:
    """Drive one session per position there, then time steps round-robin over the sessions, so a change
    in machine load during the run hits every position alike."""
    n_mels = enc.cfg.n_mels if hasattr(enc, "cfg") else enc.n_mels
    chunk_mel = int(s.chunk_ms / 10)
    keep_frames = int(s.keep_s * 1000 / enc.frame_ms)
    drive_s = min(10.0, enc.max_window_frames * enc.frame_ms / 3000)  # a third of the window at most
    gen = torch.Generator().manual_seed(0)
    trims: list[float] = []
    states = {}
    with torch.inference_mode():
        for target in sorted(s.positions_s):
            state, pos_s = enc.create_state(), 0.0
            while pos_s + 1e-9 < target:
                sec = min(drive_s, target - pos_s)
                _step_timed(enc, state, torch.randn(n_mels, int(sec * 100), generator=gen), keep_frames, trims)
                pos_s += sec
            states[target] = state
        windows = {t: enc.window_frames(st) * enc.frame_ms / 1000 for t, st in states.items()}
        times: dict[float, list[float]] = {t: [] for t in states}
        for _ in range(s.repeats):
            for target, state in states.items():
                mel = torch.randn(n_mels, chunk_mel, generator=gen)
                times[target].append(_step_timed(enc, state, mel, keep_frames, trims))
    step_ms = {t: 1000 * min(v) for t, v in times.items()}
    median_ms = {t: 1000 * statistics.median(v) for t, v in times.items()}
    return step_ms, median_ms, windows, (1000 * statistics.mean(trims) if trims else None)


def run_encoder_bench(s: BenchSettings = BenchSettings()) -> tuple[str, list[ModeResult]]:
    torch.set_num_threads(s.threads)
    model, described = load_model(s.model)
    results = []
    for mode, settings, enc in _encoders(model, s):
        if mode not in s.modes:
            continue
        step_ms, median_ms, window_s, trim_ms = bench_mode(enc, s)
        first, last = min(step_ms), max(step_ms)
        ratio = step_ms[last] / step_ms[first]
        results.append(ModeResult(mode, settings, step_ms, median_ms, window_s, trim_ms, ratio))
    return described, results


def format_table(described: str, results: list[ModeResult], s: BenchSettings) -> str:
    pos = sorted(s.positions_s)
    head = ["mode"] + [f"step @{p:g}s ms" for p in pos] + [f"ratio {pos[-1]:g}/{pos[0]:g}", "window s", "trim ms"]
    rows = []
    for r in results:
        rows.append(
            [r.mode]
            + [f"{r.step_ms[p]:.1f}" for p in pos]
            + [f"{r.ratio:.2f}", "/".join(f"{r.window_s[p]:.1f}" for p in pos), "-" if r.trim_ms is None else f"{r.trim_ms:.0f}"]
        )  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "| " + " | ".join(x.ljust(w) for x, w in zip(row, widths)) + " |"  # noqa: E731
    lines = [
        f"Encoder step cost: {described}; chunk {s.chunk_ms:g} ms; {s.threads} thread(s); "
        f"best of {s.repeats}; trims keep {s.keep_s:g} s",
        "",
        fmt(head),
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [fmt(r) for r in rows]
    lines += ["", "settings: " + "; ".join(f"{r.mode}: {r.settings}" for r in results)]
    return "\n".join(lines)


def to_json(described: str, results: list[ModeResult], s: BenchSettings) -> dict:
    return {"model": described, "settings": asdict(s), "results": [asdict(r) for r in results]}


def markdown_section(described: str, results: list[ModeResult], s: BenchSettings) -> str:
    """The "Encoder step cost" section of docs/benchmarks.md (``streamrt bench all``)."""
    return "\n".join(
        [
            "    streamrt bench encoder --model tiny.en            # add --format json for the raw figures",
            "",
            "One chunk step of each encoder mode at several stream positions (see streamrt/bench/encoder.py).",
            "Whisper's positions end at 30 s, so every mode trims its window the same way on long streams: when",
            f"the next step would not fit, keep the last {s.keep_s:g} s (`trim`, timed apart). Cached modes should",
            "keep a ratio near 1 (goal <= 1.1); re-encode grows with its window up to 30 s. Compare within a row.",
            "",
            format_table(described, results, s),
        ]
    )
