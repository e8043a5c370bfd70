"""POST /v1/audio/transcriptions with the official ``openai`` client, on the counting model (one word
``w<i>`` per 500 ms of audio, with exact timestamps): formats, streaming, limits and errors."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from streamrt.server.settings import ServerSettings
from tests.streamrt.server.test_server_ws import START, TONE

openai = pytest.importorskip("openai")

WORDS_3S = [f"w{i}" for i in range(6)]


def wav(seconds: float, rate: int = 16000, channels: int = 1, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt)
    return buf.getvalue()


def client(server, api_key: str = "unused") -> "openai.AsyncOpenAI":
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=api_key, max_retries=0)


async def test_json_text_and_the_session_went_through_the_scheduler(make_server):
    server = await make_server()
    c = client(server)
    # 44.1 kHz stereo FLAC: decoded, downmixed and resampled to the model's 16 kHz
    res = await c.audio.transcriptions.create(model="whisper-1", file=("a.flac", wav(3.0, 44100, 2, "FLAC")))
    assert res.text == " ".join(WORDS_3S)
    text = await c.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(3.0)), response_format="text")
    assert text.strip() == " ".join(WORDS_3S)
    assert server.stats.sessions_started == 2 and server.stats.words_committed == 12
    assert server.model.steps > 0 and server.stats.connections_active == 0


async def test_verbose_json_word_and_segment_timestamps(make_server):
    server = await make_server()
    res = await client(server).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", wav(3.0)), response_format="verbose_json",
        timestamp_granularities=["word", "segment"], language="en", temperature=0.0, prompt="ignored",
    )
    assert [w.word for w in res.words] == WORDS_3S
    assert [(w.start, w.end) for w in res.words] == [(i * 0.5, (i + 1) * 0.5) for i in range(6)]
    assert res.duration == 3.0 and res.language == "en" and res.text == " ".join(WORDS_3S)
    assert len(res.segments) == 1 and (res.segments[0].start, res.segments[0].end) == (0.0, 3.0)


async def test_srt_and_vtt(make_server):
    server = await make_server()
    c = client(server)
    srt = await c.audio.transcriptions.create(model="m", file=("a.wav", wav(1.0)), response_format="srt")
    assert srt.strip() == "1\n00:00:00,000 --> 00:00:01,000\nw0 w1"
    vtt = await c.audio.transcriptions.create(model="m", file=("a.wav", wav(1.0)), response_format="vtt")
    assert vtt.strip() == "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nw0 w1"


async def test_stream_true_sends_deltas_then_done(make_server):
    server = await make_server()
    stream = await client(server).audio.transcriptions.create(model="m", file=("a.wav", wav(3.0)), stream=True)
    events = [ev async for ev in stream]
    kinds = [ev.type for ev in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"} and len(kinds) > 2
    assert "".join(ev.delta for ev in events[:-1]) == events[-1].text == " ".join(WORDS_3S)


async def test_an_upload_respects_the_buffer_limit_of_live_sessions(make_server):
    """20 s fed faster than real time, never more than max_buffered_audio_s ahead: no buffer_full."""
    server = await make_server(ServerSettings(model_name="counting", max_buffered_audio_s=1.0))
    res = await client(server).audio.transcriptions.create(model="m", file=("a.wav", wav(20.0)))
    assert res.text.split() == [f"w{i}" for i in range(40)]


async def test_an_upload_and_a_live_session_share_the_scheduler(make_server):
    server = await make_server()
    pcm = (TONE * 32767).astype("<i2").tobytes()
    async with connect(server.url + "/v1/stream") as ws:
        await ws.send(json.dumps(START))
        upload = asyncio.create_task(client(server).audio.transcriptions.create(model="m", file=("a.wav", wav(3.0))))
        await ws.send(pcm)
        await ws.send('{"type":"stop"}')
        live = [json.loads(m) async for m in ws]
        res = await upload
    assert [w["text"] for m in live if m["type"] == "commit" for w in m["words"]] == WORDS_3S
    assert res.text == " ".join(WORDS_3S) and server.stats.sessions_started == 2


async def test_an_upload_is_background_work_and_a_ws_client_may_opt_in(make_server):
    """An upload runs as background work (stepped in the live sessions' slack, never driving the
    degradation ladder) unless it says otherwise; a WebSocket client opts in with "background"."""
    from streamrt.server.transcribe import transcribe

    server = await make_server()
    seen: list[bool] = []

    async def on_message(msg: dict) -> None:
        if msg["type"] == "commit":
            seen.extend(s["background"] for s in server.scheduler.stats()["per_session"].values())

    samples = np.zeros(16000 * 2, np.float32)
    assert (await transcribe(server, samples, {}, on_message)).text == "w0 w1 w2 w3"
    assert seen and all(seen)
    seen.clear()
    await transcribe(server, samples, {"background": False}, on_message)
    assert seen and not any(seen)
    async with connect(server.url + "/v1/stream") as ws:
        await ws.send(json.dumps({**START, "background": True}))
        assert json.loads(await ws.recv())["background"] is True


@pytest.mark.parametrize(
    "settings, body, status, code, names",
    [
        (ServerSettings(model_name="c", max_upload_bytes=50_000), wav(3.0), 413, "file_too_large", "max_upload_bytes"),
        (ServerSettings(model_name="c", max_upload_s=2.0), wav(3.0), 400, "audio_too_long", "max_upload_s"),
        (ServerSettings(model_name="c"), b"RIFF not really a wave file", 400, "invalid_file_format", "formats read"),
        (ServerSettings(model_name="c"), b"", 400, "invalid_file_format", "formats read"),
    ],
)
async def test_bad_uploads_get_openai_style_errors_naming_the_limit(make_server, settings, body, status, code, names):
    server = await make_server(settings)
    with pytest.raises(openai.APIStatusError) as e:
        await client(server).audio.transcriptions.create(model="m", file=("a.wav", body))
    err = e.value.body
    assert e.value.status_code == status and err["code"] == code and names in err["message"]
    assert err["type"] == "invalid_request_error" and server.stats.connections_active == 0


async def test_bad_fields_are_400_naming_the_field(make_server):
    server = await make_server()
    c = client(server)
    for kw, param in [({"response_format": "docx"}, "response_format"), ({"temperature": 3}, "temperature"),
                      ({"timestamp_granularities": ["char"]}, "timestamp_granularities[]")]:
        with pytest.raises(openai.BadRequestError) as e:
            await c.audio.transcriptions.create(model="m", file=("a.wav", wav(0.5)), **kw)
        assert e.value.body["param"] == param, kw


async def test_auth_busy_and_a_body_over_the_limit_without_content_length(make_server):
    import httpx

    server = await make_server(ServerSettings(model_name="c", auth_token="s3cret", max_sessions=1,
                                              max_upload_bytes=100_000))
    with pytest.raises(openai.AuthenticationError) as e:
        await client(server, "wrong").audio.transcriptions.create(model="m", file=("a.wav", wav(0.5)))
    assert e.value.body["code"] == "invalid_api_key"
    ok = await client(server, "s3cret").audio.transcriptions.create(model="m", file=("a.wav", wav(1.0)))
    assert ok.text == "w0 w1"
    async with connect(server.url + "/v1/stream?token=s3cret") as ws:  # holds the only session
        await ws.send(json.dumps(START))
        await ws.recv()
        with pytest.raises(openai.InternalServerError) as e:
            await client(server, "s3cret").audio.transcriptions.create(model="m", file=("a.wav", wav(0.5)))
        assert e.value.status_code == 503 and "max_sessions" in e.value.body["message"]
    async def chunks():  # chunked transfer: no Content-Length to refuse up front
        for _ in range(20):
            yield b"x" * 10_000

    async with httpx.AsyncClient() as h:
        r = await h.post(f"http://127.0.0.1:{server.port}/v1/audio/transcriptions", content=chunks(),
                         headers={"Authorization": "Bearer s3cret", "Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "at least" in r.json()["error"]["message"]


async def test_a_client_that_gives_up_frees_its_session():
    """The upload's session leaves the scheduler when the HTTP client disconnects mid-way."""
    import httpx

    from tests.streamrt.server.server_helpers import server_class
    from tests.streamrt.server.test_server_ws_limits import SlowModel

    server = server_class()(SlowModel(), settings=ServerSettings(model_name="c"), port=0)  # 50 ms a step
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/v1/audio/transcriptions"
        async with httpx.AsyncClient(timeout=0.5) as h:  # 60 s of audio: about 15 s of steps
            with pytest.raises(httpx.ReadTimeout):
                await h.post(url, files={"file": ("a.wav", wav(60.0))}, data={"model": "m"})
        for _ in range(100):
            if server.stats.connections_active == 0:
                break
            await asyncio.sleep(0.02)
        assert server.stats.connections_active == 0 and server.stats.sessions_started == 1
        res = await client(server).audio.transcriptions.create(model="m", file=("a.wav", wav(1.0)))
        assert res.text == "w0 w1"
    finally:
        await server.stop()
