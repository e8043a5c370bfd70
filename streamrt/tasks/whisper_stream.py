"""Whisper streaming: log-mel -> streaming encoder -> incremental decoder -> policy -> word units.

    model = WhisperStreamingModel.from_pretrained("tiny.en", encoder_mode="reencode", chunk_ms=1000)
    stream = model.create_stream({"policy": "local-agreement", "policy_options": {"n": 2}})
    stream.accept_audio(samples_16k)
    while stream.is_ready():
        model.step([stream])          # the scheduler passes many streams at once
    result = stream.pop_result()      # committed words (UnitDraft) + partial text

One step per stream consumes up to ``chunk_ms`` of new audio, extends the encoder window (and the
decoder's cross-attention cache by the new frames only), re-decodes the uncommitted tail after the
forced prefix (sot sequence + words committed in this window), asks the policy, and commits whole
words. Audio before the last committed word is trimmed from the window once it is longer than
``trim_after_s`` (whisper_streaming's buffer trimming); the committed text before the window goes
into the decoder's prompt (``<|startofprev|>``).

The model holds what streams share (weights, encoder, decoder, settings, degradation knobs); a
stream is plain per-session state; the step runs straight through functions of both, writing only
the streams. Modules, in the order data flows:

    whisper_settings      WhisperStreamSettings (every limit, with units)
    whisper_stream        WhisperStreamingModel: loading, create_stream, step, describe
    whisper_knobs         the degradation ladder's knobs and the batch's validation
    whisper_step          the batched step: features, encoder, one token loop, commits, trims
    whisper_commit        one stream's policy decision and commit, and the cut that follows
    whisper_window        cuts of one stream's window: trims, forced trims, stalls, history
    whisper_hypothesis    one stream's decode request, its guards (loops, seams), word commits
    whisper_stream_state  WhisperStream: per-session state, audio in and results out
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Callable, Mapping, Sequence

import torch

from policies import registry
from streamrt.decoding import IncrementalWhisperDecoder, RepetitionGuard
from streamrt.encoders.whisper import silence_tail
from streamrt.errors import ConfigError
from streamrt.quant.precision import Precision, resolve_precision
from streamrt.tasks import whisper_step
from streamrt.tasks.whisper_knobs import DegradationKnobs
from streamrt.tasks.whisper_settings import ALIGNMENT_METHODS, PAD_MODES, WhisperStreamSettings
from streamrt.tasks.whisper_stream_state import WhisperStream

__all__ = ["ALIGNMENT_METHODS", "PAD_MODES", "WhisperStream", "WhisperStreamSettings", "WhisperStreamingModel"]


class WhisperStreamingModel(DegradationKnobs):
    """Shared Whisper weights + encoder; implements ``streamrt.engine.StreamingModel``.

    bundle: a ``streamrt.models.whisper.WhisperBundle`` (or an object with the same fields).
    encoder: a ``streamrt.encoders.base.StreamingEncoder`` over the same model.
    feature_factory: returns a fresh per-stream feature extractor with ``accept(samples) -> (n_mels,
        T)`` and ``flush()`` (``streamrt.features.logmel.LogMelStream``).
    precision_knob: a ``streamrt.quant.PrecisionKnob`` over the model's FlexiQ layers, or None.
    Degradation knobs (``set_chunk_ms``, ``set_policy_stride``, ``set_low_precision_fraction``):
    see ``streamrt.tasks.whisper_knobs``.
    """

    sample_rate = 16000

    def __init__(
        self,
        bundle: Any,
        encoder: Any,
        feature_factory: Callable[[], Any],
        settings: WhisperStreamSettings = WhisperStreamSettings(),
        *,
        encoder_mode: str | None = None,
        precision_knob: Any = None,
        precision: Precision | None = None,
        default_policy: tuple[str, Mapping[str, Any]] = ("local-agreement", {}),
        preset: str | None = None,
    ):
        settings.check()
        self.settings = settings
        self._init_knobs(precision_knob)
        self.precision = precision or resolve_precision("fp32")
        self.default_policy = (default_policy[0], dict(default_policy[1]))
        self.preset = preset
        self.bundle = bundle
        self.encoder = encoder
        self.feature_factory = feature_factory
        self.encoder_mode = encoder_mode
        max_frames = int(getattr(encoder, "max_window_frames", 1500))
        self.decoder = IncrementalWhisperDecoder(
            bundle.model,
            eot=bundle.eot,
            alignment_heads=tuple(getattr(bundle, "alignment_heads", ()) or ()),
            suppress_tokens=tuple(getattr(bundle, "suppress_tokens", ()) or ()),
            max_frames=max_frames,
        )
        attention_dtype = self.precision.attention_dtype
        if attention_dtype != torch.float32:  # the scheme's precision for the decoder's cross-attention
            self.decoder.set_cross_dtype(attention_dtype)
            if hasattr(encoder, "cache_dtype"):  # and for the encoder's attention caches (block-lookahead)
                encoder.cache_dtype = attention_dtype
        if settings.pad_cross == "silence":
            self.decoder.set_padding(silence_tail(bundle.model, settings.pad_mel_value)[:max_frames])
        # <|startofprev|> sits two ids below <|notimestamps|> in both Whisper vocabularies
        self.sot_prev = int(getattr(bundle, "sot_prev", None) or bundle.no_timestamps - 2)
        self.guard = RepetitionGuard(settings.repetition_max_ngram, settings.repetition_max_repeats)
        self.max_window_s = min(settings.max_window_s, max_frames * encoder.frame_ms / 1000.0)
        self.steps = 0

    @classmethod
    def from_pretrained(
        cls,
        name: str = "tiny.en",
        *,
        encoder_mode: str = "reencode",
        encoder_settings: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
        device: str = "cpu",
        quantize: str | None = None,
        quantize_settings: Mapping[str, Any] | None = None,
        default_policy: tuple[str, Mapping[str, Any]] = ("local-agreement", {}),
        preset: str | None = None,
        **settings: Any,
    ) -> "WhisperStreamingModel":
        """Load packaged weights (``load_whisper``), build the encoder (``make_encoder``) and features.

        quantize: None or "fp32" (float32), "auto" (bf16 where this CPU runs it natively and fast,
        else float32: ``streamrt.quant.precision``), a ``streamrt.quant`` scheme name ("bf16",
        "int8-dynamic", "int8-weight-only", "int4-weight-only"), or "flexiq" (int4/int8 per channel;
        the model then offers ``set_low_precision_fraction`` to the scheduler). ``quantize_settings``
        go to the scheme. default_policy: (name, options) for streams whose options name no policy.
        preset: the name of the ``streamrt.presets`` preset this configuration came from (reported
        by ``describe``); ``streamrt.presets.load_model`` passes it."""
        from streamrt.encoders import make_encoder
        from streamrt.features.logmel import LogMelStream
        from streamrt.models.whisper import load_whisper

        fields = WhisperStreamSettings.__dataclass_fields__
        unknown = set(settings) - set(fields)
        if unknown:
            raise ConfigError(f"unknown Whisper streaming settings: {', '.join(sorted(unknown))}; known: {', '.join(fields)}")
        precision = resolve_precision(quantize)  # an unknown scheme fails before the weights load
        bundle = load_whisper(name, cache_dir=cache_dir, device=device)
        knob = None
        if precision.scheme is not None:
            from streamrt.quant import PrecisionKnob
            from streamrt.quant import quantize as quantize_model

            quantize_model(bundle.model, precision.scheme, **dict(quantize_settings or {}))
            knob = PrecisionKnob.find(bundle.model)
        encoder = make_encoder(bundle.model, encoder_mode, **dict(encoder_settings or {}))
        n_mels = bundle.n_mels
        return cls(
            bundle,
            encoder,
            lambda: LogMelStream(n_mels=n_mels),
            replace(WhisperStreamSettings(), **settings),
            encoder_mode=encoder_mode,
            precision_knob=knob,
            precision=precision,
            default_policy=default_policy,
            preset=preset,
        )

    # ---- StreamingModel ------------------------------------------------------------------------
    def create_stream(self, options: Mapping[str, object] | None = None) -> WhisperStream:
        """options: policy (name), policy_options (dict), task ("transcribe"/"translate"), language.

        Raises UnknownPolicyError / PolicyOptionError / ConfigError for bad options."""
        opts = dict(options or {})
        known = {"policy", "policy_options", "task", "language"}
        unknown = set(opts) - known
        if unknown:
            raise ConfigError(f"unknown stream options: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        policy_opts = opts.get("policy_options") or {}
        if not isinstance(policy_opts, Mapping):
            raise ConfigError(f"policy_options must be a mapping, got {type(policy_opts).__name__}")
        policy_name = str(opts.get("policy") or self.default_policy[0])
        if policy_name == self.default_policy[0]:  # the configured options, with the client's on top
            policy_opts = {**self.default_policy[1], **policy_opts}
        policy = registry.create(policy_name, policy_opts)
        task = str(opts.get("task") or "transcribe")
        language = opts.get("language")
        sot = self._sot_sequence(task, language)
        state = self.encoder.create_state()
        return WhisperStream(self, policy, sot, task=task, language=language, features=self.feature_factory(),
                             encoder_state=state, cache=self.decoder.create_cache(),
                             window_frames=self.encoder.window_frames(state))

    def _sot_sequence(self, task: str, language: object) -> list[int]:
        if task not in ("transcribe", "translate"):
            raise ConfigError(f"task must be 'transcribe' or 'translate', got {task!r}")
        b = self.bundle
        if not b.multilingual and (task == "translate" or language not in (None, "en")):
            raise ConfigError(
                f"{getattr(b, 'name', 'this model')} is English-only: task={task!r}, language={language!r} "
                "needs a multilingual model (e.g. base)"
            )
        if language is not None and b.multilingual and language not in b.language_ids:
            raise ConfigError(f"unknown language {language!r}; known: {', '.join(sorted(b.language_ids))}")
        try:
            return list(b.sot_sequence(task=task, language=language))
        except (ValueError, KeyError) as e:
            raise ConfigError(f"cannot build the start sequence for task={task!r}, language={language!r}: {e}") from None

    def step(self, streams: Sequence[WhisperStream]) -> None:
        """Advance each ready stream by one chunk; the encoder runs once for the whole batch
        (``streamrt.tasks.whisper_step``)."""
        whisper_step.step(self, streams)

    def describe(self) -> dict:
        """Effective settings (for logs and scores.json)."""
        return {
            "model": getattr(self.bundle, "name", None),
            "preset": self.preset,
            "encoder_mode": self.encoder_mode,
            "quantize": self.precision.scheme,
            **self.precision.describe(),
            "default_policy": self.default_policy[0],
            "default_policy_options": dict(self.default_policy[1]),
            "low_precision_fraction": self.low_precision_fraction,
            "policy_stride": self.policy_stride,
            "frame_ms": self.encoder.frame_ms,
            "max_window_frames": self.decoder.max_frames,
            "alignment_heads": [list(h) for h in self.decoder.alignment_heads],
            **asdict(self.settings),
        }
