"""Happy path with real speech: moonshine-voice's beckett.wav through the server and the Whisper
streaming model (tiny.en, packaged weights), compared with its reference text."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

# Samuel Beckett, "Worstward Ho" (1983), as read in moonshine-voice's assets/beckett.wav
BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def beckett_wav() -> Path:
    try:
        path = resources.files("moonshine_voice").joinpath("assets", "beckett.wav")
    except ModuleNotFoundError:
        pytest.skip("moonshine-voice (the bundled recordings) is not installed")
    return Path(str(path))


async def test_real_recording_through_the_server_matches_its_reference():
    whisper_stream = pytest.importorskip(
        "streamrt.tasks.whisper_stream", reason="WhisperStreamingModel has not landed on this branch yet"
    )
    pytest.importorskip("streamrt.scheduler.scheduler", reason="the Scheduler has not landed on this branch yet")
    import jiwer

    from streamrt.audio import load_audio
    from streamrt.clients.ws_client import stream_samples
    from streamrt.server.settings import ServerSettings
    from streamrt.server.asgi_server import AsgiServer

    model = whisper_stream.WhisperStreamingModel.from_pretrained("tiny.en")
    audio = load_audio(beckett_wav(), 16000)
    async with AsgiServer(model, settings=ServerSettings(model_name="tiny.en"), port=0) as server:
        res = await stream_samples(server.url, audio, speed=0, chunk_ms=200)
    assert res.close_code == 1000 and res.end is not None, (res.close_code, res.close_reason, res.errors)
    hyp = words(res.text)
    assert res.end["text"] == res.text
    wer = jiwer.wer(" ".join(words(BECKETT)), " ".join(hyp))
    assert wer <= 0.25, (res.text, wer)
    stamps = res.words
    assert all(0 <= w["start_ms"] <= w["end_ms"] and w["media_delay_ms"] <= w["elapsed_ms"] for w in stamps)
    assert [w["media_delay_ms"] for w in stamps] == sorted(w["media_delay_ms"] for w in stamps)
    assert res.end["summary"]["units"] == len(stamps) and abs(res.end["source_ms"] - 9960) < 50


async def test_the_default_preset_served_transcribes_and_says_its_precision():
    """What `streamrt serve` serves with no flags: the default preset, precision auto."""
    from streamrt.audio import load_audio
    from streamrt.clients.ws_client import stream_samples
    from streamrt.presets import DEFAULT_PRESET, load_model
    from streamrt.quant.precision import resolve_precision
    from streamrt.server.settings import ServerSettings
    from streamrt.server.asgi_server import AsgiServer

    model = load_model("tiny.en")
    audio = load_audio(beckett_wav(), 16000)
    async with AsgiServer(model, settings=ServerSettings(model_name="tiny.en"), port=0) as server:
        res = await stream_samples(server.url, audio, speed=0, chunk_ms=200)
    assert res.close_code == 1000 and res.end is not None, (res.close_code, res.close_reason, res.errors)
    settings = res.ready["settings"]
    auto = resolve_precision("auto")
    assert settings["preset"] == DEFAULT_PRESET and settings["precision"] == auto.name
    assert settings["precision_requested"] == "auto" and settings["cpu_capability"] == auto.cpu.label
    # word for word: the AlignAtt presets once ended this clip with "Fail better." twice (a repeat
    # decoded at 9 s, attending back to the first one; whisper_hypothesis.repeated_span cuts it)
    assert words(res.text) == words(BECKETT), res.text


async def test_the_openai_client_transcribes_beckett_exactly_through_the_http_api():
    """`streamrt serve`'s transport and default preset; the official client; data/real/beckett.wav."""
    openai = pytest.importorskip("openai")
    from metrics.normalize import english
    from streamrt.presets import load_model
    from streamrt.server.asgi_server import AsgiServer
    from streamrt.server.settings import ServerSettings

    root = Path(__file__).resolve().parents[3] / "data"
    ref = next(line.split("\t")[2] for line in (root / "real.tsv").read_text().splitlines() if line.startswith("beckett\t"))
    async with AsgiServer(load_model("tiny.en"), settings=ServerSettings(model_name="tiny.en"), port=0) as server:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="-", max_retries=0)
        with open(root / "real" / "beckett.wav", "rb") as f:
            res = await client.audio.transcriptions.create(model="tiny.en", file=f, response_format="verbose_json",
                                                           timestamp_granularities=["word"])
    assert english(res.text) == english(ref), res.text
    assert [w.start for w in res.words] == sorted(w.start for w in res.words) and res.words[-1].end <= res.duration
