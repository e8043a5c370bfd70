"""Named presets: one source of truth for serve, eval run and bench streams."""

from dataclasses import replace

import pytest

from policies import registry
from streamrt.encoders import make_encoder
from streamrt.errors import ConfigError
from streamrt.presets import DEFAULT_PRESET, PRESETS, get_preset
from streamrt.tasks.whisper_stream import WhisperStreamSettings
from tests.streamrt.random_whisper import random_whisper


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_configuration(name):
    p = get_preset(name)
    kw = p.model_kwargs()
    assert kw["quantize"] == "auto" and kw["preset"] == name
    make_encoder(random_whisper(max_source_positions=1500), p.encoder_mode, **p.encoder_settings)
    registry.create(p.policy, dict(p.policy_options))  # a known policy with valid options
    fields = {k: v for k, v in kw.items() if k in WhisperStreamSettings.__dataclass_fields__}
    assert fields.keys() == {*p.settings, "chunk_ms"}, "every preset setting is a WhisperStreamSettings field"
    replace(WhisperStreamSettings(), **fields).check()


def test_the_default_preset_exists_and_an_unknown_one_names_the_choices():
    assert DEFAULT_PRESET in PRESETS
    with pytest.raises(ConfigError, match="unknown preset 'fastest'; known presets: balanced, low-latency"):
        get_preset("fastest")


def test_overrides_change_only_what_is_given_and_are_reported():
    base = get_preset("balanced")
    assert base.with_overrides() == base and base.with_overrides(chunk_ms=base.chunk_ms).label == "balanced"
    p = base.with_overrides(chunk_ms=1000, settings={"stall_reset_s": 3.0})
    assert p.chunk_ms == 1000 and p.label == "balanced+chunk_ms,settings"
    assert p.settings == {**base.settings, "stall_reset_s": 3.0} and p.policy_options == base.policy_options


def test_the_same_policy_merges_options_and_another_policy_starts_from_its_own_defaults():
    base = get_preset("low-latency")
    assert dict(base.policy_options) == {"frames": 8}
    assert dict(base.with_overrides(policy_options={"frames": 4}).policy_options) == {"frames": 4}
    la = base.with_overrides(policy="local-agreement")
    assert la.policy == "local-agreement" and dict(la.policy_options) == {}
    assert dict(base.with_overrides(policy="wait-k", policy_options={"k": 3}).policy_options) == {"k": 3}


def test_another_encoder_starts_from_its_own_settings():
    base = get_preset("balanced")
    assert dict(base.with_overrides(encoder_mode="reencode").encoder_settings) == {}
    p = base.with_overrides(encoder_settings={"lookahead_frames": 10})
    assert dict(p.encoder_settings) == {**base.encoder_settings, "lookahead_frames": 10}


def test_chunk_ms_inside_settings_is_refused():
    with pytest.raises(ConfigError, match="chunk_ms is a preset field"):
        get_preset("balanced").with_overrides(settings={"chunk_ms": 1000})


def test_presets_cannot_be_changed_in_place():
    with pytest.raises(TypeError):
        get_preset("balanced").settings["chunk_ms"] = 5  # type: ignore[index]


def test_serve_eval_run_and_bench_streams_load_the_default_preset_without_flags(tmp_path, monkeypatch):
    import numpy as np
    import soundfile as sf
    from typer.testing import CliRunner

    from streamrt.bench.streams import load_bench_model
    from streamrt.cli import app
    from streamrt.cli.serve import load_model
    from streamrt.tasks.whisper_stream import WhisperStreamingModel
    from streamrt.testing import CountingModel

    class Described(CountingModel):
        def describe(self):
            return {"chunk_ms": self.chunk_ms}

    loaded = []

    def from_pretrained(name, **kw):  # the weights are not the point here: what each asks for is
        loaded.append((name, kw))
        return Described(word_ms=500, chunk_ms=kw["chunk_ms"])

    monkeypatch.setattr(WhisperStreamingModel, "from_pretrained", staticmethod(from_pretrained))
    load_model("tiny.en", fake=False)
    load_bench_model("tiny.en")
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "d.tsv").write_text("id\taudio\treference\nu1\ta.wav\tw0 w1\n")
    out = CliRunner().invoke(app, ["eval", "run", "--data", str(tmp_path / "d.tsv"), "--out", str(tmp_path / "o"),
                                   "--quiet"])
    assert out.exit_code == 0, out.output
    expected = ("tiny.en", get_preset(DEFAULT_PRESET).model_kwargs())
    assert loaded == [expected] * 3
