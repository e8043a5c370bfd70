"""SimulEval ``instances.log`` JSON lines: one :class:`Instance` per line, read and written.

SimulEval (1.1.4, ``evaluator/instance.py``, ``Instance.summarize``) writes one JSON object per
sentence (or per recording, in streaming/long-form runs)::

    {"index": 0, "prediction": "hello world", "delays": [640.0, 1280.0],
     "elapsed": [702.3, 1391.8], "prediction_length": 2, "reference": "Hello world.",
     "source": ["talk1.wav", "samplerate: 16000 Hz", ...], "source_length": 2030.0}

``delays[i]`` is the source consumed (ms of audio, or source tokens for text input) when output
unit ``i`` was emitted; ``elapsed[i]`` adds the wall-clock compute spent so far (SimulEval's
computation-aware time). With ``--eval-latency-unit spm`` SimulEval also writes ``prediction_spm``.

:func:`read_instances` checks every line and raises :class:`streamrt.errors.LogFormatError`
naming the file, the 1-based line and the problem. Required keys: ``index``, ``prediction``,
``delays``, ``elapsed``, ``source_length``. ``reference`` may be absent or null (no reference:
length-based metrics then use the prediction length, and quality metrics are not computed);
``source`` and ``prediction_length`` are optional on reading and always written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamrt.errors import LogFormatError

UNITS = ("word", "char", "spm")
REQUIRED_KEYS = ("index", "prediction", "delays", "elapsed", "source_length")


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One line of an instances.log: a sentence (short-form) or a whole recording (long-form).

    Times (``delays``, ``elapsed``, ``source_length``) are in the log's source unit: milliseconds
    for speech input. ``delays`` and ``elapsed`` have one entry per output unit (word, char or
    spm piece, whichever unit the run was logged in) and are stored as tuples.
    """

    index: int
    prediction: str
    delays: tuple[float, ...]
    source_length: float
    elapsed: tuple[float, ...] = ()
    prediction_length: int | None = None
    reference: str | None = None
    source: str | list[str] | None = None
    prediction_spm: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "delays", tuple(self.delays))
        object.__setattr__(self, "elapsed", tuple(self.elapsed))
        if self.prediction_spm is not None:
            object.__setattr__(self, "prediction_spm", tuple(self.prediction_spm))

    def to_json(self) -> dict:
        """The JSON object SimulEval would write for this instance (key order as SimulEval's)."""
        out = {
            "index": self.index,
            "prediction": self.prediction,
            "delays": list(self.delays),
            "elapsed": list(self.elapsed),
            "prediction_length": (
                self.prediction_length if self.prediction_length is not None else len(self.delays)
            ),
            "reference": self.reference,
            "source": self.source,
            "source_length": self.source_length,
        }
        if self.prediction_spm is not None:
            out["prediction_spm"] = list(self.prediction_spm)
        return out

    @property
    def recording(self) -> str | None:
        """The audio this instance came from: ``source[0]`` when source is a list (SimulEval)."""
        if isinstance(self.source, list):
            return str(self.source[0]) if self.source else None
        return self.source


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _number_list(obj: dict, key: str) -> tuple[list[float] | None, str | None]:
    value = obj[key]
    if not isinstance(value, list):
        return None, f"{key!r} must be a list of numbers, got {type(value).__name__}"
    for i, x in enumerate(value):
        if not _is_number(x):
            return None, f"{key}[{i}] is {x!r}, not a finite number"
    return value, None


def prediction_unit_counts(prediction: str, unit: str, prediction_spm: Sequence[str] | None) -> tuple[int, ...]:
    """How many output units ``prediction`` holds in ``unit``; more than one count when two
    conventions exist (char: SimulEval drops spaces, OmniSTEval keeps them). Empty: unknown."""
    if unit == "word":
        return (len(prediction.split()),)
    if unit == "char":
        return (len(prediction.replace(" ", "")), len(prediction))
    if unit == "spm":
        return (len(prediction_spm),) if prediction_spm is not None else ()
    raise ValueError(f"unknown latency unit {unit!r}; expected one of {', '.join(UNITS)}")


def check_instance_units(ins: Instance, unit: str) -> str | None:
    """The problem with ``ins``'s delays against its prediction in ``unit``, or None if fine."""
    counts = prediction_unit_counts(ins.prediction, unit, ins.prediction_spm)
    n = len(ins.delays)
    if not counts or n in counts:
        return None
    expected = counts[0]
    relation = "longer" if n > expected else "shorter"
    return (
        f"delays are {relation} than the prediction: {n} delays for {expected} {unit} "
        f"unit(s) in the prediction"
    )


def parse_instance(obj: object, unit: str | None = "word") -> Instance:
    """Check one decoded JSON line and build its Instance; raises ValueError(problem)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(repr(k) for k in missing)}")
    index = obj["index"]
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError(f"'index' must be an integer, got {index!r}")
    prediction = obj["prediction"]
    if not isinstance(prediction, str):
        raise ValueError(f"'prediction' must be a string, got {type(prediction).__name__}")
    source_length = obj["source_length"]
    if not _is_number(source_length) or source_length <= 0:
        raise ValueError(f"'source_length' must be a positive number, got {source_length!r}")
    delays, problem = _number_list(obj, "delays")
    if problem:
        raise ValueError(problem)
    elapsed, problem = _number_list(obj, "elapsed")
    if problem:
        raise ValueError(problem)
    for i, d in enumerate(delays):
        if d < 0:
            raise ValueError(f"delays[{i}] = {d} is negative")
        if i and d < delays[i - 1]:
            raise ValueError(f"delays are not monotonic: delays[{i}] = {d} < delays[{i - 1}] = {delays[i - 1]}")
    if len(elapsed) != len(delays):
        raise ValueError(f"'elapsed' has {len(elapsed)} entries but 'delays' has {len(delays)}")
    reference = obj.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise ValueError(f"'reference' must be a string or null, got {type(reference).__name__}")
    source = obj.get("source")
    if source is not None and not isinstance(source, (str, list)):
        raise ValueError(f"'source' must be a string or a list, got {type(source).__name__}")
    prediction_spm = obj.get("prediction_spm")
    if prediction_spm is not None and not (
        isinstance(prediction_spm, list) and all(isinstance(p, str) for p in prediction_spm)
    ):
        raise ValueError("'prediction_spm' must be a list of strings")
    prediction_length = obj.get("prediction_length")
    if prediction_length is not None and (not isinstance(prediction_length, int) or isinstance(prediction_length, bool)):
        raise ValueError(f"'prediction_length' must be an integer, got {prediction_length!r}")
    ins = Instance(
        index=index,
        prediction=prediction,
        delays=delays,
        elapsed=elapsed,
        prediction_length=prediction_length,
        reference=reference,
        source=source,
        source_length=source_length,
        prediction_spm=prediction_spm,
    )
    if unit is not None:
        problem = check_instance_units(ins, unit)
        if problem:
            raise ValueError(problem)
    return ins


def read_instances(path: str | Path, unit: str | None = "word") -> list[Instance]:
    """Read an instances.log; every line is checked (see the module docstring).

    ``unit`` is the latency unit the log was written in; the number of delays must match the
    number of prediction units in it (``None`` skips that check). Blank lines are skipped.
    Raises LogFormatError(path, line, problem); OSError if the file cannot be read.
    """
    if unit is not None and unit not in UNITS:
        raise ValueError(f"unknown latency unit {unit!r}; expected one of {', '.join(UNITS)}")
    path = str(path)
    instances: list[Instance] = []
    first_line_of: dict[int, int] = {}
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise LogFormatError(path, line_no, f"not UTF-8 text (byte {e.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise LogFormatError(path, line_no, f"not valid JSON ({e.msg} at column {e.colno})") from None
            try:
                ins = parse_instance(obj, unit)
            except ValueError as e:
                raise LogFormatError(path, line_no, str(e)) from None
            if ins.index in first_line_of:
                raise LogFormatError(
                    path, line_no, f"duplicate index {ins.index} (first seen on line {first_line_of[ins.index]})"
                )
            first_line_of[ins.index] = line_no
            instances.append(ins)
    if not instances:
        raise LogFormatError(path, 1, "the log holds no instances")
    return instances


def write_instances(path: str | Path, instances: Iterable[Instance]) -> None:
    """Write instances as SimulEval instances.log JSON lines (UTF-8, one object per line)."""
    with open(path, "w", encoding="utf-8") as f:
        for ins in instances:
            f.write(json.dumps(ins.to_json(), ensure_ascii=False) + "\n")
