"""CLI commands: ``serve`` (the server: WebSocket, HTTP API and page on one port), ``stream`` (a file), ``mic`` (the microphone) and
``demo`` (server + a bundled recording in one process). Heavy imports stay inside the commands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer

from streamrt.cli.models import load_model
from streamrt.engine import Describable
from streamrt.presets import DEFAULT_PRESET

DEFAULT_URL = "ws://127.0.0.1:8765"


def bundled_recording() -> Path:
    """A real recording for the demo: moonshine-voice's beckett.wav, else the first WAV under data/."""
    try:
        from importlib import resources

        path = resources.files("moonshine_voice").joinpath("assets", "beckett.wav")
        if path.is_file():
            return Path(str(path))
    except ModuleNotFoundError:
        pass
    for candidate in sorted(Path("data").glob("**/*.wav"))[:1]:
        return candidate
    raise typer.BadParameter("no bundled recording: install moonshine-voice (streamrt[models]) or pass --file")


def _options(policy: Optional[str], language: Optional[str]) -> dict:
    return {k: v for k, v in {"policy": policy, "language": language}.items() if v is not None}


def _print_result(console, result) -> int:
    from streamrt.clients.captions import summary_table

    if result.end is not None:
        console.print(f"\n[bold]transcript:[/] {result.end['text']}", highlight=False)
        console.print(summary_table(result.end))
        return 0
    console.print(f"[red]the server closed without end[/] (close code {result.close_code}: {result.close_reason})")
    return 1


def register(app: typer.Typer) -> None:
    """Add serve, stream, mic and demo to ``app``."""

    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 for all)"),
        port: int = typer.Option(8765, min=0, max=65535, help="TCP port (0 picks a free one)"),
        model: str = typer.Option("tiny.en", help="Whisper model name or local folder"),
        fake_model: bool = typer.Option(False, "--fake-model", help="serve the counting model (no weights; tests)"),
        preset: str = typer.Option(DEFAULT_PRESET, help="named configuration (`streamrt presets` lists them)"),
        encoder_mode: Optional[str] = typer.Option(None, help="reencode, block-causal, block-lookahead or sliding (preset's if unset)"),
        chunk_ms: Optional[int] = typer.Option(None, help="audio per model step, ms (preset's if unset)"),
        quantize: Optional[str] = typer.Option(None, help="precision: auto (by this CPU), fp32, bf16, int8-dynamic, ... (preset's, auto, if unset)"),
        max_sessions: int = typer.Option(64, help="concurrent sessions; past it clients get 1013"),
        refuse_when_saturated: bool = typer.Option(
            True, help="new clients get 1013 while the machine is saturated (docs/scheduler.md)"
        ),
        max_message_bytes: int = typer.Option(1 << 20, help="largest client message, bytes"),
        max_buffered_audio_s: float = typer.Option(30.0, help="audio buffered ahead of the model, seconds"),
        idle_timeout_s: float = typer.Option(60.0, help="seconds without a client message before the session ends"),
        ping_interval_s: float = typer.Option(20.0, help="WebSocket keepalive interval, seconds"),
        auth_token: Optional[str] = typer.Option(
            None, envvar="STREAMRT_AUTH_TOKEN", help="require this bearer token (env STREAMRT_AUTH_TOKEN)"
        ),
        allowed_origin: list[str] = typer.Option([], help="allowed browser Origin (repeat); default: any"),
        metrics_public: bool = typer.Option(
            False, help="serve /metrics without the bearer token even when --auth-token is set"
        ),
        log_level: str = typer.Option("info", help="log level of the streamrt loggers (one line per session end at info)"),
        max_upload_bytes: int = typer.Option(25_000_000, help="largest upload to /v1/audio/transcriptions, bytes"),
        max_upload_s: float = typer.Option(7200.0, help="longest audio in an upload, seconds"),
        video: bool = typer.Option(False, "--video", help="score lip activity on camera frames of sessions and "
                                   "dialogues started with \"video\": true (MediaPipe FaceMesh: the video extra; "
                                   "docs/video.md)"),
        max_video_frame_pixels: int = typer.Option(1280 * 720, help="largest video frame, width x height pixels"),
        transport: str = typer.Option(
            "asgi", help="asgi: one port for the WebSocket protocol, the OpenAI-compatible HTTP API, /healthz, "
            "/metrics and the page (uvicorn); websockets: the WebSocket protocol, /healthz, /metrics and the page",
        ),
        ray: bool = typer.Option(False, "--ray", help="run as a Ray Serve deployment (streamrt[ray]; docs/scaling.md)"),
        replicas: int = typer.Option(1, min=1, help="--ray: replicas (the initial count when autoscaling)"),
        min_replicas: int = typer.Option(1, min=0, help="--ray: fewest replicas when autoscaling"),
        max_replicas: Optional[int] = typer.Option(None, min=1, help="--ray: autoscale up to this many replicas on "
                                                   "the schedulers' busy fraction (off if unset)"),
        replica_cpus: float = typer.Option(1.0, min=0.01, help="--ray: CPUs reserved per replica (its torch threads)"),
        threads: Optional[int] = typer.Option(None, min=1, help="--ray: torch threads per replica, if not --replica-cpus"),
        target_busy_fraction: float = typer.Option(0.7, help="--ray: autoscaling target busy fraction per replica"),
        ray_address: Optional[str] = typer.Option(None, help="--ray: cluster to join (default: env RAY_ADDRESS, else "
                                                  "a local one)"),
        agent: bool = typer.Option(True, "--agent/--no-agent", help="serve the voice agent on /v1/dialogue and "
                                   "/agent.html (the packaged SmolLM2, hibari TTS and silero VAD, loaded once at "
                                   "start: tens of seconds on 2 cores); never with --fake-model or --ray"),
        turn_policy: str = typer.Option("semantic", help="the agent's default turn-taking policy (silence, "
                                        "semantic, or one registered in streamrt.turn_policies)"),
    ) -> None:
        """Serve live captions over WebSocket (ws://HOST:PORT/v1/stream), file transcription over
        HTTP (POST /v1/audio/transcriptions, OpenAI-compatible), the browser page (/), /healthz and
        /metrics (Prometheus), on one port."""
        import logging

        from streamrt.server.settings import ServerSettings

        if transport not in ("asgi", "websockets"):
            raise typer.BadParameter(f"{transport!r}: choose asgi or websockets", param_hint="--transport")
        if transport == "asgi":
            try:
                from streamrt.server.asgi_server import AsgiServer as server_class
            except ImportError as e:
                raise typer.BadParameter(
                    f"the ASGI transport needs the server extra ({e}): pip install 'streamrt[server]', "
                    "or run --transport websockets (no HTTP API)", param_hint="--transport",
                ) from None
        else:
            from streamrt.server.ws import StreamServer as server_class

        level = logging.getLevelName(log_level.upper())
        if not isinstance(level, int):
            raise typer.BadParameter(f"unknown level {log_level!r}; use debug, info, warning or error", param_hint="--log-level")
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
        logging.getLogger("streamrt").setLevel(level)

        settings = ServerSettings(
            max_sessions=max_sessions,
            refuse_when_saturated=refuse_when_saturated,
            max_message_bytes=max_message_bytes,
            max_buffered_audio_s=max_buffered_audio_s,
            idle_timeout_s=idle_timeout_s,
            ping_interval_s=ping_interval_s,
            auth_token=auth_token,
            metrics_public=metrics_public,
            allowed_origins=tuple(allowed_origin) or None,
            model_name="counting" if fake_model else model,
            max_upload_bytes=max_upload_bytes,
            max_upload_s=max_upload_s,
            max_video_frame_pixels=max_video_frame_pixels,
        )
        video_model = None
        if video:
            from streamrt.errors import ModelLoadError
            from streamrt.models.faces import load_face_mesh
            from streamrt.tasks.lips import LipActivityModel

            try:
                video_model = LipActivityModel(load_face_mesh())
            except ModelLoadError as e:
                raise typer.BadParameter(e.message, param_hint="--video") from None
        if ray:
            from streamrt.cli.serve_ray import serve_on_ray

            if transport != "asgi":
                raise typer.BadParameter("Ray Serve runs the ASGI transport only", param_hint="--transport")
            if video:
                raise typer.BadParameter("--video is not served on Ray yet (one process only)", param_hint="--video")

            serve_on_ray((model, fake_model, preset, encoder_mode, chunk_ms, quantize), settings, replicas=replicas,
                         min_replicas=min_replicas, max_replicas=max_replicas, replica_cpus=replica_cpus,
                         threads=threads, target_busy_fraction=target_busy_fraction, host=host,
                         port=port or 8000, address=ray_address)
            return
        shared = load_model(model, fake_model, preset, encoder_mode, chunk_ms, quantize)
        from streamrt.clock import MonotonicClock

        clock = MonotonicClock()
        voice_agent = None
        if agent and not fake_model:
            from streamrt.cli.agent_cmd import load_voice_agent

            voice_agent = load_voice_agent(shared, clock, turn_policy, lips=video_model)
        server = server_class(shared, settings=settings, host=host, port=port, video_model=video_model,
                              agent=voice_agent, clock=clock)

        async def main() -> None:
            import signal

            try:
                await server.start()
            except OSError as e:  # port in use, no permission, unknown host
                typer.echo(f"error: cannot listen on {host}:{port}: {e.strerror or e}", err=True)
                raise typer.Exit(2) from None
            api = f"; HTTP API: http://{host}:{server.port}/v1/audio/transcriptions" if transport == "asgi" else ""
            typer.echo(f"streamrt: serving {settings.model_name} on {server.url}/v1/stream; "
                       f"browser page: http://{host}:{server.port}/{api}  (Ctrl-C stops)")
            if isinstance(shared, Describable):  # the counting model has no configuration
                d = shared.describe()
                typer.echo(f"streamrt: preset {d['preset']}; precision {d['precision_reason']}")
            if voice_agent is not None:
                typer.echo(f"streamrt: voice agent on {server.url}/v1/dialogue; talk to it at "
                           f"http://{host}:{server.port}/agent.html")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            typer.echo("streamrt: shutting down; live sessions commit and end first")
            await server.stop()
            typer.echo("streamrt: stopped")

        asyncio.run(main())

    @app.command()
    def stream(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="audio file (wav, flac, ...)"),
        url: str = typer.Option(DEFAULT_URL, help="server address"),
        speed: float = typer.Option(1.0, help="1.0 real time, 2.0 twice as fast, 0 as fast as possible"),
        chunk_ms: float = typer.Option(100.0, help="audio per message, ms"),
        encoding: str = typer.Option("pcm_s16le", help="pcm_s16le or pcm_f32le"),
        policy: Optional[str] = typer.Option(None, help="read/write policy (server default if unset)"),
        language: Optional[str] = typer.Option(None, help="source language (multilingual models)"),
        token: Optional[str] = typer.Option(None, envvar="STREAMRT_AUTH_TOKEN", help="bearer token"),
        background: bool = typer.Option(False, "--background",
                                        help="batch work: step in live sessions' slack, never degrade them "
                                             "(for --speed 0)"),
    ) -> None:
        """Send a file to a server in real time (or faster); print live captions and the summary."""
        from rich.console import Console

        from streamrt.audio import load_audio
        from streamrt.clients.captions import CaptionView
        from streamrt.clients.ws_client import stream_samples

        console = Console()
        samples = load_audio(file, 16000)
        view = CaptionView(console)
        try:
            with view:
                result = asyncio.run(
                    stream_samples(url, samples, encoding=encoding, chunk_ms=chunk_ms, speed=speed,
                                   options={**_options(policy, language), **({"background": True} if background else {})},
                                   on_message=view, token=token)
                )
        except OSError as e:
            console.print(f"[red]cannot reach the server at {url}[/]: {e}")
            raise typer.Exit(1)
        raise typer.Exit(_print_result(console, result))

    @app.command()
    def mic(
        url: str = typer.Option(DEFAULT_URL, help="server address"),
        seconds: Optional[float] = typer.Option(None, help="stop after this many seconds (default: Ctrl-C)"),
        policy: Optional[str] = typer.Option(None, help="read/write policy"),
        language: Optional[str] = typer.Option(None, help="source language"),
        token: Optional[str] = typer.Option(None, envvar="STREAMRT_AUTH_TOKEN", help="bearer token"),
    ) -> None:
        """Caption the microphone live through a server (exit 2 when there is no microphone)."""
        from rich.console import Console

        from streamrt.clients.captions import CaptionView
        from streamrt.clients.mic import MicUnavailable, mic_chunks, open_sounddevice
        from streamrt.clients.ws_client import stream_chunks

        console = Console()
        try:
            _, device = open_sounddevice()
        except MicUnavailable as e:
            console.print(f"[red]{e.message}[/]")
            raise typer.Exit(2)
        console.print(f"microphone: {device['name']} -> {url}  (Ctrl-C to stop)")
        start = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1, **_options(policy, language)}

        async def run():
            import signal

            stop = asyncio.Event()  # Ctrl-C ends the audio; the server still commits and sends end
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
            chunks = mic_chunks(max_s=seconds, stop=stop)
            return await stream_chunks(url, chunks, start, on_message=view, token=token)

        view = CaptionView(console)
        with view:
            result = asyncio.run(run())
        raise typer.Exit(_print_result(console, result))

    @app.command()
    def demo(
        model: str = typer.Option("tiny.en", help="Whisper model for the in-process server"),
        fake_model: bool = typer.Option(False, "--fake-model", help="use the counting model (no weights; tests)"),
        preset: str = typer.Option(DEFAULT_PRESET, help="named configuration (`streamrt presets` lists them)"),
        encoder_mode: Optional[str] = typer.Option(None, help="reencode, block-causal, block-lookahead or sliding (preset's if unset)"),
        chunk_ms: Optional[int] = typer.Option(None, help="audio per model step, ms (preset's if unset)"),
        file: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="recording (default: bundled)"),
        speed: float = typer.Option(1.0, help="1.0 real time, 0 as fast as possible"),
        policy: Optional[str] = typer.Option(None, help="read/write policy"),
        agent: bool = typer.Option(False, "--agent", help="instead: a scripted spoken conversation with the voice "
                                   "agent over /v1/dialogue, both sides printed with their times"),
        turn_policy: str = typer.Option("semantic", help="--agent: the turn-taking policy"),
    ) -> None:
        """Start a server in-process, stream a real recording through it in real time, print the
        live captions and the latency summary, stop the server. ``--agent``: talk to the voice agent."""
        if agent:
            from streamrt.cli.agent_cmd import run_agent_demo

            raise typer.Exit(run_agent_demo(model, preset, turn_policy))
        from rich.console import Console

        from streamrt.audio import load_audio
        from streamrt.clients.captions import CaptionView
        from streamrt.clients.ws_client import stream_samples
        from streamrt.server.asgi_server import AsgiServer
        from streamrt.server.settings import ServerSettings

        console = Console()
        path = file or bundled_recording()
        console.print(f"loading {'the counting model' if fake_model else model} ...")
        shared = load_model(model, fake_model, preset, encoder_mode, chunk_ms)
        samples = load_audio(path, 16000)
        settings = ServerSettings(model_name="counting" if fake_model else model)

        async def run():
            async with AsgiServer(shared, settings=settings, port=0) as server:
                console.print(f"server on {server.url}; streaming {path.name} ({len(samples) / 16000:.1f} s) "
                              f"at {'full speed' if speed == 0 else f'{speed:g}x real time'}")
                return await stream_samples(server.url, samples, speed=speed, options=_options(policy, None),
                                            on_message=view)

        view = CaptionView(console)
        with view:
            result = asyncio.run(run())
        console.print("server stopped")
        raise typer.Exit(_print_result(console, result))
