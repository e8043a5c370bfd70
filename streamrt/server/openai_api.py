"""``POST /v1/audio/transcriptions``, compatible with OpenAI's audio API and its clients.

Multipart fields: ``file`` (required), ``model`` (any name; this server transcribes with the model
it serves), ``response_format`` (json, text, verbose_json, srt, vtt), ``timestamp_granularities[]``
(segment, word; verbose_json only), ``language`` (passed to the model as the start field),
``prompt`` and ``temperature`` (accepted, not used: decoding is the served policy's), ``stream``
(``true``: server-sent events ``transcript.text.delta`` per commit, then ``transcript.text.done``).
The file is decoded with soundfile, resampled with soxr and run through the scheduler as a session
(``streamrt.server.transcribe``). Errors are OpenAI's shape: ``{"error": {"message", "type",
"param", "code"}}`` with a 4xx (client) or 5xx status; limits name their setting.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from streamrt.audio import decode_file
from streamrt.errors import LimitExceeded, StreamrtError
from streamrt.server.hub import SessionHub
from streamrt.server.transcribe import Transcript, TranscriptionFailed, transcribe

FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
GRANULARITIES = ("segment", "word")
FIELDS = ("file", "model", "response_format", "timestamp_granularities[]", "language", "prompt", "temperature",
          "stream", "chunking_strategy", "include[]")
SEGMENT_END = (".", "?", "!")
SEGMENT_GAP_MS = 1000.0  # a pause this long also ends a segment
SEGMENT_MAX_MS = 30000.0
STATUS_FOR_CODE = {"server_busy": 503, "shutting_down": 503, "internal_error": 500, "model_error": 500,
                   "file_too_large": 413}


class RequestRefused(StreamrtError):
    """A request the endpoint answers with an error body (``param`` names the field at fault)."""

    def __init__(self, message: str, *, code: str, param: str | None = None, status: int = 400):
        super().__init__(message, code=code, fatal=True)
        self.param = param
        self.status = status


def error_response(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    headers = {"Retry-After": "1"} if code in ("server_busy", "shutting_down") else None
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def read_body(request: Request, limit: int | None) -> bytes:
    """The request body, refused (413 ``file_too_large``) once it passes ``limit`` bytes, whether
    or not the client announced a Content-Length: nothing past the limit is kept."""
    declared = request.headers.get("content-length")
    if limit is not None and declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if limit is not None and size > limit:
            raise _too_large(limit, size, "at least ")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, size: int, prefix: str = "") -> RequestRefused:
    e = LimitExceeded("max_upload_bytes", limit, size, "bytes", what="upload size")
    return RequestRefused(e.message.replace(": ", f": {prefix}", 1), code="file_too_large", param="file", status=413)


async def parse_form(request: Request, body: bytes) -> dict[str, Any]:
    """The multipart fields, checked. Raises RequestRefused naming the field."""
    from starlette.requests import Request as _Request

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise RequestRefused(f"send multipart/form-data with a 'file' field (got content type {ctype!r})",
                             code="invalid_request", param="file")
    try:
        form = await _Request(request.scope, replay).form(max_files=1, max_fields=32)
    except Exception as e:  # multipart parse errors, too many files/fields
        raise RequestRefused(f"cannot parse the multipart body: {e}", code="invalid_request") from None
    unknown = sorted(set(form.keys()) - set(FIELDS))
    if unknown:
        raise RequestRefused(f"unknown field(s) {', '.join(unknown[:5])}; accepted: {', '.join(FIELDS)}",
                             code="unknown_parameter", param=unknown[0])
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise RequestRefused("missing the 'file' field (the audio file to transcribe)",
                             code="missing_required_parameter", param="file")
    fmt = _text(form, "response_format") or "json"
    if fmt not in FORMATS:
        raise RequestRefused(f"response_format {fmt!r} is not supported; supported: {', '.join(FORMATS)}",
                             code="invalid_value", param="response_format")
    granularities = [str(g) for g in form.getlist("timestamp_granularities[]")] or ["segment"]
    bad = [g for g in granularities if g not in GRANULARITIES]
    if bad:
        raise RequestRefused(f"timestamp_granularities[] {bad[0]!r} is not supported; supported: "
                             f"{', '.join(GRANULARITIES)}", code="invalid_value", param="timestamp_granularities[]")
    temperature = _text(form, "temperature")
    if temperature is not None:
        try:
            t = float(temperature)
        except ValueError:
            t = -1.0
        if not 0.0 <= t <= 1.0:
            raise RequestRefused(f"temperature must be a number from 0 to 1, got {temperature[:40]!r}",
                                 code="invalid_value", param="temperature")
    stream = (_text(form, "stream") or "false").lower()
    if stream not in ("true", "false"):
        raise RequestRefused(f"stream must be true or false, got {stream[:40]!r}", code="invalid_value", param="stream")
    language = _text(form, "language")
    return {
        "audio": await file.read(),
        "format": fmt,
        "granularities": granularities,
        "stream": stream == "true",
        "options": {"language": language} if language else {},
    }


def _text(form, name: str) -> str | None:
    v = form.get(name)
    return None if v is None or isinstance(v, UploadFile) else str(v)


async def transcriptions(request: Request, hub: SessionHub) -> Response:
    """The endpoint: parse, decode, run through the scheduler, answer in the asked format."""
    try:
        body = await read_body(request, hub.settings.max_upload_bytes)
        req = await parse_form(request, body)
        samples = decode_file(req["audio"], hub.model.sample_rate, max_s=hub.settings.max_upload_s)
    except RequestRefused as e:
        return error_response(e.status, e.message, e.code, e.param)
    except StreamrtError as e:  # the audio: invalid_file_format, audio_too_long
        return error_response(400, e.message, e.code, "file")
    if req["stream"]:
        return StreamingResponse(_events(hub, samples, req["options"]), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})
    try:
        result = await _unless_disconnected(request, transcribe(hub, samples, req["options"]))
    except TranscriptionFailed as e:
        return error_response(STATUS_FOR_CODE.get(e.code, 400), e.message, e.code)
    if result is None:  # the client went away: its session already left the scheduler
        return Response(status_code=499)
    return render(result, req["format"], req["granularities"], req["options"].get("language", "english"))


async def _unless_disconnected(request: Request, work) -> Transcript | None:
    """Run ``work``; cancel it (None) if the client disconnects first, so that an abandoned upload
    does not hold a session and model time."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(watcher, task, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()


async def _events(hub: SessionHub, samples, options: dict) -> AsyncIterator[str]:
    """Server-sent events as OpenAI streams a transcription: one ``transcript.text.delta`` per
    commit (append-only text), then ``transcript.text.done``; a failure is an ``error`` event."""
    queue: asyncio.Queue = asyncio.Queue()
    started = [False]

    async def on_message(msg: dict) -> None:
        if msg["type"] == "commit" and msg["text"]:
            delta = (" " if started[0] else "") + msg["text"]
            started[0] = True
            queue.put_nowait({"type": "transcript.text.delta", "delta": delta})

    async def run() -> None:
        try:
            result = await transcribe(hub, samples, options, on_message)
            queue.put_nowait({"type": "transcript.text.done", "text": result.text,
                              "usage": {"type": "duration", "seconds": round(result.duration_s, 3)}})
        except TranscriptionFailed as e:
            queue.put_nowait({"type": "error", "error": {"message": e.message, "type": "server_error", "code": e.code}})
        queue.put_nowait(None)

    task = asyncio.create_task(run())
    try:
        while (event := await queue.get()) is not None:
            yield f"data: {json.dumps(event)}\n\n"
    finally:
        task.cancel()  # the client went away: the session leaves the scheduler
        await asyncio.gather(task, return_exceptions=True)


# ---- response formats ----------------------------------------------------------------------------
def segments(words: list[dict]) -> list[list[dict]]:
    """Words grouped into segments: a segment ends after a word ending a sentence, before a pause of
    SEGMENT_GAP_MS or when it would pass SEGMENT_MAX_MS."""
    out: list[list[dict]] = []
    for w in words:
        cur = out[-1] if out else None
        if cur is None or cur[-1]["text"].rstrip().endswith(SEGMENT_END) or w["start_ms"] - cur[-1]["end_ms"] >= SEGMENT_GAP_MS \
                or w["end_ms"] - cur[0]["start_ms"] > SEGMENT_MAX_MS:
            out.append([w])
        else:
            cur.append(w)
    return out


def render(t: Transcript, fmt: str, granularities: list[str], language: str = "english") -> Response:
    if fmt == "json":
        return JSONResponse({"text": t.text, "usage": {"type": "duration", "seconds": round(t.duration_s, 3)}})
    if fmt == "text":
        return PlainTextResponse(t.text)
    if fmt == "srt":
        return PlainTextResponse(subtitles(segments(t.words), srt=True))
    if fmt == "vtt":
        return Response(subtitles(segments(t.words), srt=False), media_type="text/vtt")
    body: dict[str, Any] = {"task": "transcribe", "language": language, "duration": round(t.duration_s, 3),
                            "text": t.text}
    if "segment" in granularities:
        body["segments"] = [
            {"id": i, "seek": 0, "start": seg[0]["start_ms"] / 1000, "end": seg[-1]["end_ms"] / 1000,
             "text": " ".join(w["text"] for w in seg), "tokens": [], "temperature": 0.0, "avg_logprob": 0.0,
             "compression_ratio": 1.0, "no_speech_prob": 0.0}
            for i, seg in enumerate(segments(t.words))
        ]
    if "word" in granularities:
        body["words"] = [{"word": w["text"].strip(), "start": w["start_ms"] / 1000, "end": w["end_ms"] / 1000}
                         for w in t.words]
    body["usage"] = {"type": "duration", "seconds": round(t.duration_s, 3)}
    return JSONResponse(body)


def subtitles(segs: list[list[dict]], *, srt: bool) -> str:
    """SubRip (numbered cues, ``00:00:01,000``) or WebVTT (``WEBVTT`` header, ``00:00:01.000``)."""
    sep = "," if srt else "."
    cues = []
    for i, seg in enumerate(segs, 1):
        span = f"{_stamp(seg[0]['start_ms'], sep)} --> {_stamp(seg[-1]['end_ms'], sep)}"
        text = " ".join(w["text"] for w in seg)
        cues.append(f"{i}\n{span}\n{text}\n" if srt else f"{span}\n{text}\n")
    return "\n".join(cues) if srt else "WEBVTT\n\n" + "\n".join(cues)


def _stamp(ms: float, sep: str) -> str:
    total = int(round(ms))
    h, rest = divmod(total, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"
