"""``streamrt serve --ray``: the server as a Ray Serve deployment (streamrt.server.ray_serve).

The command deploys, prints where it listens, and waits; Ctrl-C (or SIGTERM) undeploys: every
replica drains (live sessions commit and get ``end``) before it stops."""

from __future__ import annotations

import functools
import signal
import threading

import typer

from streamrt.errors import StreamrtError
from streamrt.server.settings import ServerSettings


def serve_on_ray(load_args: tuple, settings: ServerSettings, *, replicas: int, min_replicas: int,
                 max_replicas: int | None, replica_cpus: float, threads: int | None, target_busy_fraction: float,
                 host: str, port: int, address: str | None) -> None:
    """Deploy ``settings`` on Ray with the model ``streamrt.cli.models.load_model(*load_args)``
    (loaded in each replica, not here) and block until interrupted."""
    from streamrt.cli.models import load_model

    try:
        from streamrt.server.ray_serve import RayServeSettings, run_on_ray
    except ImportError as e:
        raise typer.BadParameter(f"Ray Serve is not installed ({e}): pip install 'streamrt[ray]'",
                                 param_hint="--ray") from None
    name, fake, preset, encoder_mode, chunk_ms, quantize = load_args
    try:
        if not fake:  # a bad preset or override fails here, not in every replica
            from streamrt.presets import get_preset

            get_preset(preset).with_overrides(encoder_mode=encoder_mode, chunk_ms=chunk_ms, quantize=quantize)
        layout = RayServeSettings(
            replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas, cpus_per_replica=replica_cpus,
            threads=threads, target_busy_fraction=target_busy_fraction, host=host, port=port, address=address)
    except StreamrtError as e:
        raise typer.BadParameter(e.message, param_hint="--preset/--replicas/--max-replicas/--replica-cpus") from None
    scaling = (f"autoscaling {layout.min_replicas}-{layout.max_replicas} replicas on busy fraction "
               f"(target {layout.target_busy_fraction:g})" if max_replicas is not None else f"{replicas} replicas")
    typer.echo(f"streamrt: deploying {settings.model_name} on Ray Serve: {scaling}, {replica_cpus:g} CPU each")
    url = run_on_ray(functools.partial(load_model, *load_args), settings, layout)
    typer.echo(f"streamrt: serving on {url}; browser page: http://{host}:{port}/  (Ctrl-C stops)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    typer.echo("streamrt: undeploying; every replica drains (live sessions commit and end) first")
    from ray import serve

    from streamrt.server.ray_serve import APP_NAME

    serve.delete(APP_NAME)  # replicas see it and drain; returns once they are gone
    serve.shutdown()
    typer.echo("streamrt: stopped")
