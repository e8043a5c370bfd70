"""Latency-quality curves of a sweep (matplotlib, Agg backend: no display needed).

``plot_sweep(rows, path)`` draws WER (or BLEU) against LAAL (left) and LAAL_CA (right, computation
aware), one curve per policy x encoder mode (colour: policy, line and marker: encoder), the points
of a curve ordered by latency and labelled by their knob; outliers are clipped to the top, labelled; the offline reference is a dashed horizontal line; the goal region (latency <= 1 s,
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
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), sharey=True)
    off_q = _finite(offline.get(quality)) if offline else None
    qs = sorted(r[quality] for r in rows if _finite(r.get(quality)) is not None)
    top = _y_top(qs, off_q, quality)
    policies = sorted({str(p.get("policy")) for pts in curves.values() for p in pts})
    encoders = sorted({str(p.get("encoder")) for pts in curves.values() for p in pts})
    colors = {p: f"C{i % 10}" for i, p in enumerate(policies)}
    styles = {e: ("-", "-.", ":", "--")[i % 4] for i, e in enumerate(encoders)}
    markers = {e: "os^DvP*X"[i % 8] for i, e in enumerate(encoders)}
    for ax, (key, xlabel) in zip(axes, PANELS):
        for curve, pts in sorted(curves.items()):
            pts = sorted((p for p in pts if _finite(p.get(key)) is not None and _finite(p.get(quality)) is not None),
                         key=lambda p: p[key])
            if not pts:
                continue
            xs = [p[key] / 1000.0 for p in pts]
            ys = [min(p[quality], top) for p in pts]
            pol, enc = str(pts[0].get("policy")), str(pts[0].get("encoder"))
            ax.plot(xs, ys, color=colors[pol], linestyle=styles[enc], marker=markers[enc], label=curve)
            for x, y, p in zip(xs, ys, pts):
                clipped = f" ({quality} {p[quality]:.0f})" if p[quality] > top else ""
                ax.annotate(_knob(p) + clipped, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if off_q is not None:
            ax.axhline(off_q, color="black", linestyle="--", linewidth=1, label=f"offline {quality} {off_q:.2f}")
            if quality == "WER" and goal_laal_s is not None and goal_wer_delta is not None:
                ax.fill_between([0, goal_laal_s], 0, off_q + goal_wer_delta, color="green", alpha=0.12,
                                label=f"goal: LAAL <= {goal_laal_s:g} s, WER <= offline + {goal_wer_delta:g}")
        ax.set_xlabel(xlabel)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"{quality} (%)" if quality == "WER" else quality)
    if qs:
        lo = min(qs + ([off_q] if off_q is not None else []))
        pad = max(0.5, 0.05 * (top - lo))
        axes[0].set_ylim(max(0.0, lo - pad) if quality == "WER" else lo - pad, top + pad)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.025 * (len(labels) // 4), 1, 0.95 if title else 1))
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _y_top(qs: list[float], offline: float | None, quality: str) -> float:
    """WER axis top: outliers (a broken point at 98 % WER) are clipped so the useful range stays
    readable; they are drawn at the top and labelled with their value."""
    if not qs:
        return 1.0
    if quality != "WER":
        return qs[-1]
    typical = qs[int(0.75 * (len(qs) - 1))]
    return min(qs[-1], max(10.0, 2.0 * typical, (offline or 0.0) + 5.0))


def _knob(row: Mapping[str, Any]) -> str:
    opts = ",".join(f"{k}={v}" for k, v in (row.get("policy_options") or {}).items())
    chunk = f"{row['chunk_ms']}ms" if row.get("chunk_ms") else ""
    return " ".join(x for x in (opts, chunk) if x)


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None
