"""``WhisperBundle``: one loaded Whisper model with its tokenizer and the ids decoding needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamrt.errors import ConfigError
from streamrt.models.whisper.tokenizer import WhisperTokenizer

TASKS = ("transcribe", "translate")


@dataclass(frozen=True, eq=False)
class WhisperBundle:
    """A shared, read-only Whisper model (transformers, eval, float32) and its token ids.

    ``suppress_tokens`` are suppressed at every decoding step (the package's/HF list plus the task,
    start, previous-text, LM and no-speech tokens); ``begin_suppress_tokens`` only at the first
    generated position (space and end-of-text). ``alignment_heads`` are (decoder layer, head) pairs
    whose cross-attention follows the audio (for AlignAtt-style policies); empty when unknown.
    ``language_ids`` is empty for English-only models.
    """

    model: Any  # transformers.WhisperForConditionalGeneration
    tokenizer: WhisperTokenizer
    name: str
    multilingual: bool
    n_mels: int
    sot: int
    eot: int
    no_timestamps: int
    transcribe: int
    translate: int
    no_speech: int
    timestamp_begin: int
    sot_prev: int
    sot_lm: int
    language_ids: dict[str, int]
    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]
    alignment_heads: tuple[tuple[int, int], ...]
    vocab_size: int
    max_target_positions: int  # decoder positions, prompt included (448)
    source: str = ""  # the directory the weights were loaded from
    info: dict[str, Any] = field(default_factory=dict)  # conversion facts (key, seconds, files)

    def sot_sequence(self, task: str = "transcribe", language: str | None = None, *, timestamps: bool = False) -> list[int]:
        """The decoder prompt: [sot, language, task, no_timestamps] (multilingual) or [sot, no_timestamps].

        ``language=None`` means English on a multilingual model (detect it first with
        ``streamrt.models.whisper.offline.detect_language`` if it is unknown). English-only models
        accept only task "transcribe" and language None/"en". With ``timestamps=True`` the
        no-timestamps token is left out. Raises ConfigError for an unknown task or language.
        """
        if task not in TASKS:
            raise ConfigError(f"unknown Whisper task {task!r}; choose one of {', '.join(TASKS)}")
        seq = [self.sot]
        if self.multilingual:
            code = language or "en"
            if code not in self.language_ids:
                raise ConfigError(
                    f"model {self.name!r} has no language {code!r}; known: {', '.join(sorted(self.language_ids))}"
                )
            seq += [self.language_ids[code], self.transcribe if task == "transcribe" else self.translate]
        else:
            if task != "transcribe" or language not in (None, "en"):
                raise ConfigError(
                    f"model {self.name!r} is English-only: it can only transcribe English "
                    f"(asked task={task!r}, language={language!r}); load a multilingual model such as 'base'"
                )
        if not timestamps:
            seq.append(self.no_timestamps)
        return seq
