"""Latency-quality curves of a sweep (matplotlib, Agg backend: no display needed).

``plot_sweep(rows, path)`` draws WER (or BLEU) against LAAL (left) and LAAL_CA (right, computation
aware), one curve per policy x encoder mode, the points of a curve ordered by latency and labelled
by their knob; the offline reference is a dashed horizontal line; the goal region (latency <= 1 s,
WER <= offline + 1) is shaded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

PANELS = (("LAAL", "LAAL (s), non computation-aware"), ("LAAL_CA", "LAAL_CA (s), computation-aware"))


def plot_sweep(
    rows: Iterable[Mapping[str, Any]],
    path: str | Path,
    *,
    quality: str = "WER",
    title: str | None = None,
    goal_laal_s: float | None = 1.0,
    goal_wer_delta: float | None = 1.0,
) -> Path:
    """Write the figure to ``path`` (PNG) and return it. ``rows``: sweep rows (name, curve, status,
    latencies in ms, quality). Points without a finite latency or quality are left out."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("status") != "failed"]
    offline = next((r for r in rows if r.get("name") == "offline"), None)
    curves: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("name") != "offline":
            curves.setdefault(str(r.get("curve") or r.get("name")), []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    off_q = _finite(offline.get(quality)) if offline else None
    for ax, (key, xlabel) in zip(axes, PANELS):
        for i, (curve, pts) in enumerate(sorted(curves.items())):
            pts = sorted((p for p in pts if _finite(p.get(key)) is not None and _finite(p.get(quality)) is not None),
                         key=lambda p: p[key])
            if not pts:
                continue
            xs = [p[key] / 1000.0 for p in pts]
            ys = [p[quality] for p in pts]
            marker = "os^DvP*X"[i % 8]
            ax.plot(xs, ys, marker=marker, linestyle="-", label=curve)
            for x, y, p in zip(xs, ys, pts):
                ax.annotate(_knob(p), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if off_q is not None:
            ax.axhline(off_q, color="black", linestyle="--", linewidth=1, label=f"offline {quality} {off_q:.2f}")
            if quality == "WER" and goal_laal_s is not None and goal_wer_delta is not None:
                ax.fill_between([0, goal_laal_s], off_q - 100, off_q + goal_wer_delta, color="green", alpha=0.08,
                                label=f"goal: LAAL <= {goal_laal_s:g} s, WER <= offline + {goal_wer_delta:g}")
        ax.set_xlabel(xlabel)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"{quality} (%)" if quality == "WER" else quality)
    qs = [r[quality] for r in rows if _finite(r.get(quality)) is not None]
    if qs:
        lo, hi = min(qs), max(qs)
        pad = max(0.5, 0.08 * (hi - lo))
        axes[0].set_ylim(max(0.0, lo - pad) if quality == "WER" else lo - pad, hi + pad)
    axes[1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _knob(row: Mapping[str, Any]) -> str:
    opts = ",".join(f"{k}={v}" for k, v in (row.get("policy_options") or {}).items())
    chunk = f"{row['chunk_ms']}ms" if row.get("chunk_ms") else ""
    return " ".join(x for x in (opts, chunk) if x)


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None
