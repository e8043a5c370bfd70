"""Named streaming configurations: the one source of truth for what ``streamrt serve``, ``streamrt
eval run`` and ``streamrt bench streams`` run when given no configuration flags.

    from streamrt.presets import DEFAULT_PRESET, get_preset, load_model
    model = load_model("tiny.en")                         # the default preset
    model = load_model("tiny.en", "accurate")             # another one by name
    preset = get_preset("balanced").with_overrides(chunk_ms=1000)   # one field changed, rest as named

A preset fixes the encoder, the step length, the read/write policy a stream gets when its client
names none, the decoder settings that go with that policy, and the precision (``auto``: bf16 where
the CPU runs it natively, else float16 weights on AVX2 CPUs, else float32; ``streamrt.quant.precision``). Measured WER, latency and
capacity of each preset, with the CPU they were measured on, are in docs/benchmarks.md ("Presets");
``streamrt presets`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from streamrt.errors import ConfigError

if TYPE_CHECKING:
    from streamrt.tasks.whisper_stream import WhisperStreamingModel


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class Preset:
    """One named configuration of ``WhisperStreamingModel.from_pretrained`` plus the default policy.

    settings: ``WhisperStreamSettings`` fields (chunk_ms excluded: it has its own field).
    overrides: the fields a caller changed with ``with_overrides`` (reported next to the name).
    """

    name: str
    summary: str
    encoder_mode: str
    chunk_ms: int
    policy: str
    policy_options: Mapping[str, Any] = field(default_factory=_frozen)
    encoder_settings: Mapping[str, Any] = field(default_factory=_frozen)
    settings: Mapping[str, Any] = field(default_factory=_frozen)
    quantize: str = "auto"
    overrides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The name, and the fields changed from it: "balanced" or "balanced+chunk_ms,policy"."""
        return self.name + (f"+{','.join(self.overrides)}" if self.overrides else "")

    def with_overrides(
        self, *, encoder_mode: str | None = None, chunk_ms: int | None = None, policy: str | None = None,
        policy_options: Mapping[str, Any] | None = None, encoder_settings: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None, quantize: str | None = None,
    ) -> "Preset":
        """This preset with the given fields changed (None keeps the preset's). Mappings are merged
        over the preset's, except that another policy starts from its own defaults, and another
        encoder from its own settings."""
        changed: dict[str, Any] = {}
        if encoder_mode is not None and encoder_mode != self.encoder_mode:
            changed["encoder_mode"] = encoder_mode
            changed["encoder_settings"] = _frozen()
        if encoder_settings:
            changed["encoder_settings"] = _frozen({**changed.get("encoder_settings", self.encoder_settings),
                                                   **encoder_settings})
        if chunk_ms is not None and chunk_ms != self.chunk_ms:
            changed["chunk_ms"] = int(chunk_ms)
        if policy is not None and policy != self.policy:
            changed["policy"] = policy
            changed["policy_options"] = _frozen()
        if policy_options:
            changed["policy_options"] = _frozen({**changed.get("policy_options", self.policy_options),
                                                 **policy_options})
        if settings:
            if "chunk_ms" in settings:
                raise ConfigError("chunk_ms is a preset field of its own: pass it as chunk_ms, not in settings")
            changed["settings"] = _frozen({**self.settings, **settings})
        if quantize is not None and quantize != self.quantize:
            changed["quantize"] = quantize
        names = tuple(dict.fromkeys((*self.overrides, *changed)))
        return replace(self, **changed, overrides=names)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``WhisperStreamingModel.from_pretrained``."""
        return {
            "encoder_mode": self.encoder_mode,
            "encoder_settings": dict(self.encoder_settings),
            "chunk_ms": self.chunk_ms,
            "quantize": self.quantize,
            "default_policy": (self.policy, dict(self.policy_options)),
            "preset": self.label,
            **dict(self.settings),
        }

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "encoder_mode": self.encoder_mode,
                "encoder_settings": dict(self.encoder_settings), "chunk_ms": self.chunk_ms, "policy": self.policy,
                "policy_options": dict(self.policy_options), "settings": dict(self.settings),
                "quantize": self.quantize}


# The cached-encoder presets read Whisper through block-lookahead (a frame is cached once this
# much look-ahead exists; at most 1 s frozen per group), reset stalls after 2 s, and run up to 3 trims
# and 4 token-loop iterations per stream per step (docs/whisper-streaming.md explains each setting;
# docs/benchmarks.md "Presets" and "Streams per machine" measure them)
_LOOKAHEAD_1S = {"chunk_frames": 50, "lookahead_frames": 50}
_LOOKAHEAD_05S = {"chunk_frames": 50, "lookahead_frames": 25}
_CACHED_STEPS = {"stall_reset_s": 2.0, "max_trims_per_step": 3, "max_loop_iterations": 4}
# AlignAtt commits what one decode heard, so a window trimmed to start abruptly mid-sentence, misheard,
# is committed at once: its trims keep the last committed word in the window (``trim_keep_words``)
_ALIGNATT_STEPS = {**_CACHED_STEPS, "reuse_prefix_kv": True, "stop_at_policy": True, "trim_keep_words": 1}

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    Preset("balanced", "AlignAtt (16 frames) over the cached encoder with 0.5 s of look-ahead, 500 ms "
           "steps, decoding only up to where the policy stops: nearly low-latency's streams per "
           "machine at a lower WER (the default)",
           "block-lookahead", 500, "alignatt", _frozen({"frames": 16}), _frozen(_LOOKAHEAD_05S),
           _frozen(_ALIGNATT_STEPS)),
    Preset("low-latency", "AlignAtt (8 frames), otherwise as balanced: words sooner and the most streams "
           "per machine, at a higher WER",
           "block-lookahead", 500, "alignatt", _frozen({"frames": 8}), _frozen(_LOOKAHEAD_05S),
           _frozen(_ALIGNATT_STEPS)),
    Preset("accurate", "LocalAgreement-2 over the cached encoder with 1 s of look-ahead, 500 ms steps, the "
           "committed prefix re-run every step: offline-level WER; a word commits only once two steps "
           "agree, so it commits later, and fewer streams fit a machine",
           "block-lookahead", 500, "local-agreement", _frozen({"n": 2}), _frozen(_LOOKAHEAD_1S),
           _frozen({**_CACHED_STEPS, "reuse_prefix_kv": False})),
    Preset("whisper-streaming", "whisper_streaming's own method: LocalAgreement-2 over re-encoding, 1 s "
           "steps (the baseline every figure is compared with)",
           "reencode", 1000, "local-agreement", _frozen({"n": 2})),
)})

DEFAULT_PRESET = "balanced"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ConfigError lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def load_model(model: str = "tiny.en", preset: str | Preset = DEFAULT_PRESET, **load_kwargs: Any) -> "WhisperStreamingModel":
    """``WhisperStreamingModel.from_pretrained(model, ...)`` configured by ``preset`` (a name or a
    ``Preset``); ``load_kwargs`` (cache_dir, device, quantize_settings) go straight through."""
    from streamrt.tasks.whisper_stream import WhisperStreamingModel

    p = get_preset(preset) if isinstance(preset, str) else preset
    return WhisperStreamingModel.from_pretrained(model, **p.model_kwargs(), **load_kwargs)
