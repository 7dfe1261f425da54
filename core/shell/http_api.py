"""Live status and Prometheus metrics over HTTP (aiohttp, imported only when used).

``pykeepalived --http-listen 127.0.0.1:9650`` serves:

* ``GET /status``: the same JSON document as the status socket;
* ``GET /metrics``: Prometheus text exposition (format 0.0.4) of the VRRP
  instances (state, priorities, advert and drop counters, transitions) and
  the virtual servers (quorum, real servers up and their weights);
* ``GET /healthz``: ``ok`` while the daemon runs;
* ``GET /``: a live dashboard (:mod:`.dashboard`), fed by ``GET /events``
  (server-sent events: a status snapshot at once and after every change).

The server only reads a snapshot; it never changes daemon state.  It binds
to 127.0.0.1 unless told otherwise.  With ``--http-token-file FILE``,
clients that are not on loopback must send ``Authorization: Bearer TOKEN``
(or ``?token=TOKEN``, which the dashboard passes on to its event stream).
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pykeepalived.core.shell.dashboard import PAGE, Changes, stream

log = logging.getLogger("pykeepalived.http")

Snapshot = Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]]

STATE_VALUES = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3, "STOP": 4}


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (on 127.0.0.1) -> (host, port);
    ValueError if malformed."""
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT or PORT, got '{text}'")
    host = host.strip("[]")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} out of range 1..65535")
    return host, number


def _label(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(status: dict[str, Any]) -> str:
    """Prometheus text format for a status snapshot (pure; unit-tested)."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    def sample(name: str, labels: dict[str, object], value: float) -> None:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        out.append(f"{name}{{{inner}}} {value:g}" if inner else f"{name} {value:g}")

    family("pykeepalived_up", "gauge", "1 while the daemon runs.")
    sample("pykeepalived_up", {}, 1)
    family("pykeepalived_uptime_seconds", "gauge", "Seconds since the daemon started.")
    sample("pykeepalived_uptime_seconds", {}, float(status.get("uptime", 0)))

    instances = status.get("vrrp_instances", [])
    family(
        "pykeepalived_vrrp_state",
        "gauge",
        "VRRP state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT, 4 STOP.",
    )
    for inst in instances:
        sample(
            "pykeepalived_vrrp_state",
            {"instance": inst["name"], "interface": inst.get("interface", "")},
            STATE_VALUES.get(inst.get("state", ""), -1),
        )
    family("pykeepalived_vrrp_priority", "gauge", "Configured priority.")
    for inst in instances:
        sample("pykeepalived_vrrp_priority", {"instance": inst["name"]}, inst.get("priority", 0))
    family("pykeepalived_vrrp_effective_priority", "gauge", "Priority after tracker weights.")
    for inst in instances:
        sample(
            "pykeepalived_vrrp_effective_priority",
            {"instance": inst["name"]},
            inst.get("effective_priority", 0),
        )
    family(
        "pykeepalived_vrrp_split_brain",
        "gauge",
        "1 while another MASTER of the instance's virtual router is seen (split brain).",
    )
    for inst in instances:
        sb = inst.get("split_brain") or {}
        sample(
            "pykeepalived_vrrp_split_brain",
            {"instance": inst["name"]},
            int(bool(sb.get("detected"))),
        )
    family("pykeepalived_vrrp_split_brains_total", "counter", "Split brains detected.")
    for inst in instances:
        sb = inst.get("split_brain") or {}
        sample(
            "pykeepalived_vrrp_split_brains_total", {"instance": inst["name"]}, sb.get("count", 0)
        )
    counters: dict[str, tuple[str, str]] = {
        "adverts_sent": ("pykeepalived_vrrp_adverts_sent_total", "Adverts sent."),
        "adverts_received": ("pykeepalived_vrrp_adverts_received_total", "Adverts received."),
        "pri_zero_sent": (
            "pykeepalived_vrrp_priority_zero_sent_total",
            "Priority-0 adverts sent (resigning MASTER).",
        ),
        "gratuitous_sent": (
            "pykeepalived_vrrp_gratuitous_sent_total",
            "Gratuitous ARPs and unsolicited NAs sent.",
        ),
    }
    for key, (name, help_text) in counters.items():
        family(name, "counter", help_text)
        for inst in instances:
            sample(name, {"instance": inst["name"]}, inst.get("counters", {}).get(key, 0))
    family(
        "pykeepalived_vrrp_received_dropped_total",
        "counter",
        "Received adverts dropped, by reason (auth_failure, ttl, checksum, ...).",
    )
    for inst in instances:
        for key, value in sorted(inst.get("counters", {}).items()):
            if key.startswith("rx_drop_"):
                sample(
                    "pykeepalived_vrrp_received_dropped_total",
                    {"instance": inst["name"], "reason": key[len("rx_drop_") :]},
                    value,
                )
    family("pykeepalived_vrrp_transitions_total", "counter", "State entries, by state.")
    for inst in instances:
        for key, value in sorted(inst.get("counters", {}).items()):
            if key.startswith("became_"):
                sample(
                    "pykeepalived_vrrp_transitions_total",
                    {"instance": inst["name"], "state": key[len("became_") :].upper()},
                    value,
                )

    servers = status.get("virtual_servers", [])
    if servers:
        family("pykeepalived_lvs_quorum_up", "gauge", "1 while the virtual server has quorum.")
        for vs in servers:
            sample(
                "pykeepalived_lvs_quorum_up",
                {"virtual_server": vs["virtual_server"]},
                1 if vs.get("quorum_up") else 0,
            )
        family("pykeepalived_lvs_real_server_up", "gauge", "1 while the real server is alive.")
        family_weight = "pykeepalived_lvs_real_server_weight"
        weights: list[tuple[dict[str, object], float]] = []
        for vs in servers:
            for rs in vs.get("real_servers", []):
                labels: dict[str, object] = {
                    "virtual_server": vs["virtual_server"],
                    "real_server": rs["real_server"],
                }
                sample("pykeepalived_lvs_real_server_up", labels, 1 if rs.get("alive") else 0)
                weights.append((labels, float(rs.get("weight", 0))))
        family(family_weight, "gauge", "Weight of the real server in IPVS.")
        for labels, weight in weights:
            sample(family_weight, labels, weight)
    return "\n".join(out) + "\n"


def read_token(path: str) -> str:
    """The bearer token: the file's first line (OSError/ValueError for the caller)."""
    with open(path) as fh:
        token = fh.readline().strip()
    if not token:
        raise ValueError(f"{path}: empty token")
    return token


def _is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class HttpApi:
    """The aiohttp server behind ``--http-listen``."""

    def __init__(
        self, host: str, port: int, snapshot: Snapshot, *, token: str | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.snapshot = snapshot
        self.token = token
        #: The daemon calls ``changes.notify()`` on every state event.
        self.changes = Changes()
        self._runner: Any = None
        if token is None and not _is_loopback(host):
            log.warning(
                "--http-listen %s:%d is not loopback and has no --http-token-file: "
                "anyone who reaches it can read the status",
                host,
                port,
            )

    def allowed(self, peer: str | None, header: str | None, query: str | None) -> bool:
        """Loopback clients, or anyone with the token when one is set."""
        if self.token is None or _is_loopback(peer):
            return True
        offered = ""
        if header and header.startswith("Bearer "):
            offered = header[len("Bearer ") :].strip()
        elif query:
            offered = query
        return bool(offered) and hmac.compare_digest(offered, self.token)

    async def _status(self) -> dict[str, Any]:
        data = self.snapshot()
        if inspect.isawaitable(data):
            data = await data
        return data

    async def start(self) -> None:
        from aiohttp import web

        @web.middleware
        async def guard(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if not self.allowed(
                request.remote, request.headers.get("Authorization"), request.query.get("token")
            ):
                return web.Response(
                    status=401,
                    text="401: bearer token required\n",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return await handler(request)

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html")

        async def events(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            try:
                await stream(response.write, self._status, self.changes)
            except (ConnectionResetError, ConnectionError):
                pass  # the browser went away
            return response

        async def status(request: web.Request) -> web.Response:
            body = json.dumps(await self._status(), default=str, indent=2)
            return web.Response(text=body + "\n", content_type="application/json")

        async def metrics(request: web.Request) -> web.Response:
            text = render_metrics(await self._status())
            return web.Response(
                text=text, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
            )

        async def healthz(request: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        app = web.Application(middlewares=[guard])
        app.router.add_get("/", page)
        app.router.add_get("/events", events)
        app.router.add_get("/status", status)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        # shutdown_timeout: open event streams never end on their own.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
