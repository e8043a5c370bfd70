"""``streamrt eval score``: latency and quality of a SimulEval instances.log.

Short-form (one line per sentence)::

    streamrt eval score instances.log [--unit word|char|spm] [--computation-aware] [--format json]

Long-form (one line per recording, scored against a reference segmentation)::

    streamrt eval score instances.log --segments dev.yaml --references dev.de [--computation-aware]

Bad input ends with one line ``error: FILE:LINE: problem`` on stderr and exit code 2.
"""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Optional

import typer

BAD_INPUT_EXIT_CODE = 2


class LatencyUnit(str, enum.Enum):
    word = "word"
    char = "char"
    spm = "spm"


class OutputFormat(str, enum.Enum):
    table = "table"
    json = "json"


class WerNormalizer(str, enum.Enum):
    english = "english"
    basic = "basic"
    none = "none"


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=BAD_INPUT_EXIT_CODE)


def _render(scores: dict[str, float], fmt: OutputFormat) -> str:
    if fmt is OutputFormat.json:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in scores.items()}
        return json.dumps(clean)
    width = max(len(k) for k in scores)
    lines = []
    for name, value in scores.items():
        shown = f"{value:.3f}" if math.isfinite(value) else "n/a"
        lines.append(f"{name:<{width}}  {shown:>12}")
    return "\n".join(lines)


def score_command(
    instances_log: Path = typer.Argument(..., help="SimulEval instances.log (JSON lines)."),
    unit: LatencyUnit = typer.Option(LatencyUnit.word, "--unit", help="Latency unit the log was written in."),
    spm_model: Optional[Path] = typer.Option(None, "--spm-model", help="SentencePiece model for --unit spm."),
    computation_aware: bool = typer.Option(
        False, "--computation-aware", help="Also score on elapsed (compute included): the _CA metrics."
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, or one JSON object."),
    wer_normalizer: WerNormalizer = typer.Option(
        WerNormalizer.english, "--wer-normalizer", help="Text normalisation before WER."
    ),
    segments: Optional[Path] = typer.Option(
        None, "--segments", help="Long-form: reference segmentation (YAML/JSON list of wav, offset, duration)."
    ),
    references: Optional[Path] = typer.Option(
        None, "--references", help="Long-form: reference sentences, one line per segment."
    ),
    fix_elapsed: bool = typer.Option(
        False, "--fix-elapsed", help="Long-form: de-accumulate elapsed before LongYAAL_CA "
        "(OmniSTEval's --fix_simuleval_emission_ca)."
    ),
) -> None:
    """Score a SimulEval instances.log: AL, LAAL, DAL, AP, ATD, YAAL (+ _CA), BLEU and WER.

    Long-form (--segments and --references; one log line per recording): LongYAAL and StreamLAAL (+ _CA), BLEU and WER.
    """
    from metrics.io import read_instances
    from streamrt.errors import StreamrtError

    if (segments is None) != (references is None):
        _fail("long-form scoring needs both --segments and --references")
    if unit is LatencyUnit.spm and spm_model is None:
        _fail("--unit spm needs --spm-model (the target SentencePiece model)")
    normalizer = None if wer_normalizer is WerNormalizer.none else wer_normalizer.value
    try:
        instances = read_instances(instances_log, unit.value)
        if segments is not None:
            from metrics.longform import score_long_form
            from metrics.segments import read_segments

            if unit is LatencyUnit.spm:
                _fail("long-form scoring supports --unit word or char")
            scores = score_long_form(
                instances, read_segments(segments, references), unit.value, computation_aware,
                fix_elapsed=fix_elapsed, wer_normalizer=normalizer, log_name=str(instances_log),
            )
        else:
            from metrics.scoring import score

            scores = score(
                instances, unit.value, computation_aware,
                spm_model=str(spm_model) if spm_model else None, wer_normalizer=normalizer,
            )
    except StreamrtError as e:
        _fail(e.message)
    except OSError as e:
        _fail(f"cannot read {e.filename or instances_log}: {e.strerror or e}")
    except (ValueError, ImportError) as e:
        _fail(str(e))
    typer.echo(_render(scores, fmt))


def register(app: typer.Typer) -> None:
    """Add ``score`` to the ``eval`` sub-app."""
    app.command("score")(score_command)
