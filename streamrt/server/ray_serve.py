"""The server as a Ray Serve deployment: N replicas, each with its own model, scheduler and sessions.

    streamrt serve --ray --replicas 2                        # a local cluster, or RAY_ADDRESS's
    serve run docs/ray-serve.yaml                            # the same, from Ray's own CLI

Each replica is one ``StreamrtReplica`` actor: it loads the model (``load_model()`` runs in the
replica), builds a ``SessionHub`` (scheduler, admission, health) and serves the one-port ASGI app
(``streamrt.server.asgi.build_app``: the WebSocket protocol, ``POST /v1/audio/transcriptions``,
``/healthz``, ``/metrics``, the page) through Ray Serve's ingress, which takes any ASGI app,
WebSockets included. Ray Serve's HTTP proxy accepts
every connection and hands each request to a replica; a WebSocket is one request for its whole life,
so a session stays on the replica that accepted it (nothing else needs to stick). The proxy picks
the less loaded of two replicas by requests in flight, and never sends a replica more than
``max_ongoing_requests`` = ``max_sessions + http_headroom``; the replica's own admission still
refuses sessions past ``max_sessions`` or while saturated (``server_busy``, 1013).

Replica count: fixed (``replicas``), or autoscaled between ``min_replicas`` and ``max_replicas`` on
the scheduler's busy fraction, saturation and sessions (``streamrt.server.ray_autoscale``, Ray
Serve's custom-metric autoscaling). docs/scaling.md says how this maps onto a real cluster.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any, Callable

from streamrt.engine import StreamingModel
from streamrt.errors import ConfigError
from streamrt.server.ray_autoscale import BusyFractionPolicy
from streamrt.server.settings import ServerSettings

APP_NAME = "streamrt"
log = logging.getLogger("streamrt.server")


@dataclass(frozen=True)
class RayServeSettings:
    """How the deployment is laid out on the cluster.

    replicas: replicas when not autoscaling (``max_replicas`` None).
    min_replicas / max_replicas: autoscale between these (``max_replicas`` set turns autoscaling on).
    target_busy_fraction: autoscaling aims at this busy fraction per replica (and at this share of
        ``max_sessions`` per replica); above it replicas are added, below it removed.
    upscale_delay_s / downscale_delay_s: how long the wish must hold before Ray adds / removes one.
    cpus_per_replica: CPUs Ray reserves for each replica (Ray's ``num_cpus``). Ray also sets the
        replica's ``OMP_NUM_THREADS`` to it (rounded, at least 1), so torch uses that many threads.
    threads: torch CPU threads per replica, when it should differ from ``cpus_per_replica``.
    http_headroom: requests a replica takes beyond ``max_sessions`` (``/healthz``, ``/metrics``,
        uploads, and sessions it will refuse with a reason rather than leave queued at the proxy).
    drain_timeout_s: a replica being removed gets no new sessions and waits this long for its live
        ones to end; then Ray stops it, and a session still open is cut (close 1006, words not yet
        committed lost). On scale-down and redeploys Ray Serve gives the replica no signal before
        that wait, so its sessions end on their own; when the whole application is deleted, see
        ``status_poll_s`` (docs/scaling.md).
    status_poll_s: how often each replica asks Ray Serve whether its application is being deleted
        (Ctrl-C, ``serve shutdown``); when it is, the replica drains at once: every live session
        commits, gets ``end`` and closes 1001. None: never ask (sessions then wait as above).
    host / port: where Ray Serve's HTTP proxy listens (one per node).
    address: the cluster to join (``auto``, ``ray://head:10001``); None: RAY_ADDRESS, else a local one.
    """

    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int | None = None
    target_busy_fraction: float = 0.7
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 300.0
    cpus_per_replica: float = 1.0
    threads: int | None = None
    http_headroom: int = 8
    drain_timeout_s: float = 120.0
    status_poll_s: float | None = 2.0
    host: str = "127.0.0.1"
    port: int = 8000
    address: str | None = None

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"replicas must be >= 1, got {self.replicas}")
        if self.max_replicas is not None and not 0 <= self.min_replicas <= self.max_replicas:
            raise ConfigError(f"need 0 <= min_replicas <= max_replicas, got {self.min_replicas} and {self.max_replicas}")
        if not 0 < self.target_busy_fraction <= 1:
            raise ConfigError(f"target_busy_fraction must be in (0, 1], got {self.target_busy_fraction}")
        if self.cpus_per_replica <= 0:
            raise ConfigError(f"cpus_per_replica must be > 0, got {self.cpus_per_replica}")
        if self.http_headroom < 1:
            raise ConfigError(f"http_headroom must be >= 1, got {self.http_headroom}")
        if self.status_poll_s is not None and self.status_poll_s <= 0:
            raise ConfigError(f"status_poll_s must be > 0 or None, got {self.status_poll_s}")
        if self.drain_timeout_s < 0:
            raise ConfigError(f"drain_timeout_s must be >= 0, got {self.drain_timeout_s}")

    def deployment_options(self, server: ServerSettings) -> dict[str, Any]:
        """Ray Serve ``@serve.deployment`` options for these settings."""
        sessions = server.max_sessions if server.max_sessions is not None else 1000
        opts: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.cpus_per_replica},
            "max_ongoing_requests": sessions + self.http_headroom,
            "health_check_period_s": 10.0,
            "graceful_shutdown_timeout_s": self.drain_timeout_s,
            "graceful_shutdown_wait_loop_s": 1.0,
        }
        if self.max_replicas is None:
            opts["num_replicas"] = self.replicas
        else:
            opts["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "initial_replicas": min(max(self.replicas, self.min_replicas), self.max_replicas),
                "max_replicas": self.max_replicas,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
                "policy": {
                    "policy_function": BusyFractionPolicy,
                    "policy_kwargs": {"target_busy_fraction": self.target_busy_fraction,
                                      "max_sessions": server.max_sessions},
                },
            }
        return opts


class StreamrtReplica:
    """One replica: model + ``SessionHub`` + the ASGI app (``serve.ingress`` is applied in
    ``build_application``, which also makes this a Ray Serve deployment)."""

    def __init__(self, load_model: Callable[[], StreamingModel], settings: ServerSettings, threads: int | None,
                 status_poll_s: float | None):
        from ray import serve

        from streamrt.server.hub import SessionHub

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        context = serve.get_replica_context()
        self.app_name = context.app_name
        self.replica_id = context.replica_id.unique_id
        self.hub = SessionHub(load_model(), settings=replace(settings, replica_id=self.replica_id))
        self._status_poll_s = status_poll_s
        self._watch: asyncio.Task | None = None

    def __serve_build_asgi_app__(self):
        """Ray Serve calls this on the replica's event loop once the replica is built; the app's
        lifespan starts the scheduler."""
        from streamrt.server.asgi import build_app

        if self._status_poll_s is not None:
            self._watch = asyncio.get_running_loop().create_task(self._drain_when_deleted(self._status_poll_s))
        return build_app(self.hub)

    async def _drain_when_deleted(self, poll_s: float) -> None:
        """Once the application is being deleted (``serve.delete``/``shutdown``, Ctrl-C of ``streamrt
        serve --ray`` or ``serve run``), drain: every live session commits, gets ``end`` and closes
        1001, so that Ray's graceful shutdown, which waits for open requests, finds none left."""
        from ray import serve

        while True:
            await asyncio.sleep(poll_s)
            try:
                app = (await asyncio.to_thread(serve.status)).applications.get(self.app_name)
            except Exception as e:  # the controller is restarting: ask again next time
                log.debug("serve.status failed: %r", e)
                continue
            if app is None or app.status == "DELETING":
                log.info("application %s is being deleted: draining replica %s", self.app_name, self.replica_id)
                await self.hub.drain()
                return

    def record_autoscaling_stats(self) -> dict[str, float]:
        """The custom autoscaling metrics (``streamrt.server.ray_autoscale.METRICS``)."""
        st = self.hub.scheduler.stats() if self.hub.scheduler is not None else {}
        return {
            "busy_fraction": float(st.get("busy_fraction") or 0.0),
            "saturated": 1.0 if st.get("saturation") else 0.0,
            "sessions": float(self.hub.stats.connections_active),
        }


def build_application(load_model: Callable[[], StreamingModel], settings: ServerSettings, layout: RayServeSettings):
    """The bound Ray Serve application (pass it to ``serve.run``)."""
    from ray import serve

    deployment = serve.deployment(name="StreamrtReplica", **layout.deployment_options(settings))(
        serve.ingress()(StreamrtReplica)
    )
    return deployment.bind(load_model, settings, layout.threads, layout.status_poll_s)


def run_on_ray(load_model: Callable[[], StreamingModel], settings: ServerSettings, layout: RayServeSettings) -> str:
    """Start (or join) the cluster, start Serve's HTTP proxy on ``layout.host:port`` and deploy;
    returns once every replica is ready, with the WebSocket URL. ``serve.shutdown()`` undeploys."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=layout.address, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": layout.host, "port": layout.port})
    serve.run(build_application(load_model, settings, layout), name=APP_NAME, route_prefix="/")
    return f"ws://{layout.host}:{layout.port}/v1/stream"


def app_builder(args: dict[str, Any]):
    """For Ray's own CLI: ``serve run streamrt.server.ray_serve:app_builder model=tiny.en replicas=2``
    or a config file (docs/ray-serve.yaml). ``args``: model, fake_model, preset, encoder_mode,
    chunk_ms, quantize; any ``ServerSettings`` field (max_sessions, idle_timeout_s, auth_token, ...);
    any ``RayServeSettings`` field except host/port/address (the config file's ``http_options`` and
    ``serve run --address`` set those). Values given as text (``key=value``) are read as numbers or
    true/false/none where they look like one."""
    from functools import partial

    from streamrt.cli.models import load_model

    args = {k: _value(v) for k, v in args.items()}
    fake = bool(args.pop("fake_model", False))
    name = str(args.pop("model", "tiny.en"))
    model_args = {k: args.pop(k) for k in ("preset", "encoder_mode", "chunk_ms", "quantize") if k in args}
    server_fields = set(ServerSettings.__dataclass_fields__) - {"replica_id", "model_name"}
    layout_fields = set(RayServeSettings.__dataclass_fields__) - {"host", "port", "address"}
    unknown = sorted(set(args) - server_fields - layout_fields)
    if unknown:
        raise ConfigError(f"unknown app_builder argument(s) {', '.join(unknown)}; known: model, fake_model, preset, "
                          f"encoder_mode, chunk_ms, quantize, {', '.join(sorted(server_fields | layout_fields))}")
    server = ServerSettings(model_name="counting" if fake else name,
                            **{k: v for k, v in args.items() if k in server_fields})
    layout = RayServeSettings(**{k: v for k, v in args.items() if k in layout_fields})
    return build_application(partial(load_model, name, fake, **model_args), server, layout)


def _value(v: Any) -> Any:
    """A ``key=value`` argument's text as the number, bool or None it spells; anything else as is."""
    if not isinstance(v, str):
        return v
    low = v.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v
