"""``bgp_announce``: announce VIPs over BGP through an existing BGP daemon.

pykeepalived extensions (see docs/scale-out.md)::

    bgp_speaker EDGE {
        backend exabgp                     # or bird
        local_as 65001
        local_address 192.0.2.11           # exabgp: source of the session
        router_id 192.0.2.11               # exabgp: default local_address
        neighbor 192.0.2.1 65000           # ADDR PEER_AS, repeatable (exabgp)
        hold_time 3                        # exabgp (default 90)
        exabgp_path /usr/bin/exabgp        # default: next to python, else PATH
        include_file /etc/bird/pka4.conf   # bird: IPv4 static routes file
        include_file6 /etc/bird/pka6.conf  # bird: IPv6 static routes file
        control_socket /run/bird/bird.ctl  # bird
        birdc_path birdc                   # bird
    }

    bgp_announce WEB {
        speaker EDGE                       # optional with a single bgp_speaker
        prefix 203.0.113.10/32 [...]
        track_instance VI_1 [...]          # and/or
        track_group G1 [...]
        track_virtual_server 203.0.113.10 80 [tcp|udp] | fwmark N
        mode master|quorum|anycast
        next_hop self|ADDR
        community 65000:100 [...]
        med 10
        local_pref 200
        as_path_prepend 3 [while_backup]
    }

``mode master`` announces while every tracked instance / sync group is
MASTER (and every tracked virtual server has quorum); ``quorum`` while every
tracked virtual server has quorum; ``anycast`` on every node while it is
healthy: tracked virtual servers have quorum and no tracked instance or group
is FAULT/STOP.  ``as_path_prepend N while_backup`` keeps a master-mode route
announced while BACKUP, with the local AS prepended N times, instead of
withdrawing it; without ``while_backup`` the prepend is always applied.

Backends: pykeepalived starts and owns an ExaBGP speaker (its text API over
a relay process, every command acknowledged), or writes the static routes of
a file that the user's BIRD includes and runs ``birdc configure``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import pwd
import signal
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pykeepalived.api import (
    UNKNOWN_PLACE,
    Action,
    BlockSpec,
    Config,
    Context,
    EventKind,
    Grammar,
    Invalid,
    Kw,
    Node,
    Notifier,
    Place,
    StateEvent,
    build_model,
    choice,
    format_vs,
    hookimpl,
    integer,
    ip,
    parse_int,
    run_script,
    string,
    virtual_server_of,
    words,
)

log = logging.getLogger("pykeepalived.actions.bgp")

SPEAKER = "bgp_speaker"
ANNOUNCE = "bgp_announce"
#: Instance/group states in which an anycast node still counts as healthy.
HEALTHY = ("MASTER", "BACKUP")
#: Seconds to wait for ExaBGP's acknowledgement of one command.
ACK_TIMEOUT = 10.0
BIRDC_TIMEOUT = 10.0
#: Seconds before a failed apply (logged) is tried again.
RETRY = 2.0

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- configuration --------------------------------------------------------------


@dataclass
class Neighbor:
    address: str
    peer_as: int


@dataclass
class SpeakerConf:
    name: str
    place: Place = UNKNOWN_PLACE
    backend: str = "EXABGP"
    local_as: int | None = None
    local_address: str | None = None
    router_id: str | None = None
    neighbors: list[Neighbor] = field(default_factory=list)
    hold_time: int = 90
    exabgp_path: str | None = None
    include_file: str | None = None
    include_file6: str | None = None
    control_socket: str = "/run/bird/bird.ctl"
    birdc_path: str = "birdc"


@dataclass
class AnnounceConf:
    name: str
    place: Place = UNKNOWN_PLACE
    speaker: str | None = None
    prefixes: list[Prefix] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    #: Virtual servers as keepalived prints them (``[203.0.113.10]:tcp:80``, ``FWM 7``).
    virtual_servers: list[str] = field(default_factory=list)
    mode: str = ""
    next_hop: str = "self"
    communities: list[str] = field(default_factory=list)
    med: int | None = None
    local_pref: int | None = None
    prepend: int = 0
    prepend_while_backup: bool = False


def _prefixes(node: Node, ctx: Context) -> list[Prefix]:
    out: list[Prefix] = []
    for arg in node.args:
        try:
            out.append(ipaddress.ip_network(arg, strict=True))
        except ValueError:
            raise Invalid(f"'{arg}' is not a prefix (ADDRESS/LENGTH, host bits zero)") from None
    return out


def _vs_label(node: Node, ctx: Context) -> str:
    args = node.args
    if args[0].lower() == "fwmark":
        if len(args) != 2:
            raise Invalid("expected 'fwmark N'")
        return f"FWM {parse_int(args[1], 1, 2**32 - 1)}"
    if len(args) == 1:
        return args[0]  # as keepalived prints it: [203.0.113.10]:tcp:80
    addr = ip(node, ctx)
    proto = args[2].lower() if len(args) > 2 else "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise Invalid(f"'{args[2]}' is not one of tcp, udp, sctp")
    port = parse_int(args[1], 0, 65535)
    return f"[{addr}]:{proto}:{port}"


def _communities(node: Node, ctx: Context) -> list[str]:
    for arg in node.args:
        high, sep, low = arg.partition(":")
        if not sep or not high.isdigit() or not low.isdigit():
            raise Invalid(f"'{arg}' is not a community ASN:VALUE")
        if int(high) > 65535 or int(low) > 65535:
            raise Invalid(f"'{arg}': both halves of a community are 0..65535")
    return list(node.args)


def _next_hop(node: Node, ctx: Context) -> str:
    if node.args[0].lower() == "self":
        return "self"
    return str(ip(node, ctx))


def _prepend(node: Node, ctx: Context) -> tuple[int, bool]:
    count = integer(1, 16)(node, ctx)
    rest = [a.lower() for a in node.args[1:]]
    if rest not in ([], ["while_backup"]):
        raise Invalid(f"unexpected '{' '.join(node.args[1:])}' (only 'while_backup')")
    return count, bool(rest)


def _neighbor(node: Node, ctx: Context) -> Neighbor:
    addr = ip(node, ctx)
    return Neighbor(str(addr), parse_int(node.args[1], 1, 2**32 - 1))


def _speaker_spec() -> BlockSpec:
    spec = BlockSpec(SPEAKER)
    spec.add(Kw("backend", choice("exabgp", "bird"), 1, 1))
    spec.add(Kw("local_as", integer(1, 2**32 - 1), 1, 1))
    spec.add(Kw("local_address", lambda n, c: str(ip(n, c)), 1, 1))
    spec.add(Kw("router_id", lambda n, c: str(ip(n, c)), 1, 1))
    spec.add(Kw("neighbor", _neighbor, 2, 2, field="neighbors", multiple=True))
    spec.add(Kw("hold_time", integer(3, 65535), 1, 1))
    spec.add(Kw("exabgp_path", string, 1, 1))
    spec.add(Kw("include_file", string, 1, 1))
    spec.add(Kw("include_file6", string, 1, 1))
    spec.add(Kw("control_socket", string, 1, 1))
    spec.add(Kw("birdc_path", string, 1, 1))
    return spec


def _announce_spec() -> BlockSpec:
    spec = BlockSpec(ANNOUNCE)
    spec.add(Kw("speaker", string, 1, 1))
    spec.add(Kw("prefix", _prefixes, 1, None, field="prefixes", extend=True))
    spec.add(Kw("track_instance", words, 1, None, field="instances", extend=True))
    spec.add(Kw("track_group", words, 1, None, field="groups", extend=True))
    spec.add(Kw("track_virtual_server", _vs_label, 1, 3, field="virtual_servers", multiple=True))
    spec.add(Kw("mode", choice("master", "quorum", "anycast"), 1, 1))
    spec.add(Kw("next_hop", _next_hop, 1, 1))
    spec.add(Kw("community", _communities, 1, None, field="communities", extend=True))
    spec.add(Kw("med", integer(0, 2**32 - 1), 1, 1))
    spec.add(Kw("local_pref", integer(0, 2**32 - 1), 1, 1))
    spec.add(Kw("as_path_prepend", _prepend, 1, 2, field="prepend"))
    return spec


def _speaker(spec: BlockSpec) -> Any:
    def conv(node: Node, ctx: Context) -> SpeakerConf:
        v = build_model(spec, node, ctx)
        conf = SpeakerConf(node.args[0], node.place, **v)
        if conf.backend == "EXABGP":
            if conf.local_as is None:
                raise Invalid("backend exabgp needs local_as")
            if not conf.neighbors:
                raise Invalid("backend exabgp needs at least one 'neighbor ADDR PEER_AS'")
        elif conf.include_file is None and conf.include_file6 is None:
            raise Invalid("backend bird needs include_file (and/or include_file6)")
        return conf

    return conv


def _announce(spec: BlockSpec) -> Any:
    def conv(node: Node, ctx: Context) -> AnnounceConf:
        v = build_model(spec, node, ctx)
        prepend = v.pop("prepend", (0, False))
        conf = AnnounceConf(node.args[0], node.place, **v)
        conf.prepend, conf.prepend_while_backup = prepend
        if not conf.prefixes:
            raise Invalid("needs at least one prefix")
        if not conf.mode:
            conf.mode = (
                "MASTER"
                if conf.instances or conf.groups
                else "QUORUM"
                if conf.virtual_servers
                else "ANYCAST"
            )
        if conf.mode == "MASTER" and not (conf.instances or conf.groups):
            raise Invalid("mode master needs track_instance or track_group")
        if conf.mode == "QUORUM" and not conf.virtual_servers:
            raise Invalid("mode quorum needs track_virtual_server")
        if conf.prepend_while_backup and conf.mode != "MASTER":
            raise Invalid("as_path_prepend ... while_backup needs mode master")
        return conf

    return conv


def _confs(config: Config, keyword: str) -> list[Any]:
    found = config.ext.get(keyword) or []
    return list(found) if isinstance(found, list) else []


# -- what to announce ---------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One announcement as the backends send it."""

    prefix: Prefix
    next_hop: str = "self"
    communities: tuple[str, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    prepend: int = 0


def decide(conf: AnnounceConf, states: dict[str, str], quorum: dict[str, bool]) -> int | None:
    """None: withdraw; otherwise the AS-path prepend count to announce with.

    ``states`` maps ``instance:NAME`` / ``group:NAME`` to the last VRRP state
    seen (absent: not yet known); ``quorum`` maps virtual-server labels to
    whether they have quorum (absent: down, as keepalived starts them).
    """
    vs_ok = all(quorum.get(vs, False) for vs in conf.virtual_servers)
    vrrp = [states.get(f"instance:{n}", "") for n in conf.instances]
    vrrp += [states.get(f"group:{n}", "") for n in conf.groups]
    always = 0 if conf.prepend_while_backup else conf.prepend
    if conf.mode == "QUORUM":
        return always if vs_ok else None
    if conf.mode == "ANYCAST":
        return always if vs_ok and all(s in HEALTHY for s in vrrp) else None
    if vs_ok and all(s == "MASTER" for s in vrrp):
        return always
    if conf.prepend_while_backup and vs_ok and all(s in HEALTHY for s in vrrp):
        return conf.prepend
    return None


# -- backends -------------------------------------------------------------------


class Backend:
    """Makes the BGP daemon announce exactly ``routes`` (a full desired set)."""

    def __init__(self, conf: SpeakerConf) -> None:
        self.conf = conf

    async def start(self) -> None:
        pass

    async def apply(self, routes: dict[Prefix, Route]) -> bool:
        """False when something failed (logged): the caller tries again later."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


# The relay ExaBGP runs as its API process: it copies pykeepalived's commands
# (a unix socket) to ExaBGP (its stdout) and ExaBGP's acks (its stdin) back.
# Standard library only: ExaBGP runs it with pykeepalived's interpreter.  When
# pykeepalived goes away (even SIGKILL) the socket ends and the relay stops
# ExaBGP (SIGTERM to its parent): ExaBGP then closes its sessions with a Cease
# NOTIFICATION.  ExaBGP's own api.terminate only covers helpers broken at start.
RELAY = """\
import os, signal, socket, sys, threading
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
def acks():
    for line in sys.stdin.buffer:
        s.sendall(line)
    os._exit(0)
threading.Thread(target=acks, daemon=True).start()
for line in s.makefile("rb"):
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
os.kill(os.getppid(), signal.SIGTERM)
os._exit(0)
"""


def _exabgp_program(conf: SpeakerConf) -> str | None:
    if conf.exabgp_path:
        return conf.exabgp_path
    beside = Path(sys.executable).parent / "exabgp"
    if beside.exists():
        return str(beside)
    import shutil  # here: a daemon without bgp_announce does not load it

    return shutil.which("exabgp")


class ExaBgp(Backend):
    """An ExaBGP speaker started and owned by pykeepalived.

    Its lifetime is the daemon's: if pykeepalived dies (even SIGKILL) the
    relay sees EOF and stops ExaBGP, which closes its sessions with a
    NOTIFICATION, and the peers withdraw at once instead of after the hold
    time.
    """

    def __init__(self, conf: SpeakerConf) -> None:
        super().__init__(conf)
        self._dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._server: asyncio.Server | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._announced: dict[Prefix, Route] = {}
        self._lock = asyncio.Lock()
        self._log_task: asyncio.Task[None] | None = None
        #: ExaBGP said it shuts down (or its API ended): nothing more to send.
        self._gone = False
        self._closing = False
        #: Commands written whose answer has not been read yet.
        self._owed = 0

    def render_config(self, relay_argv: list[str]) -> str:
        c = self.conf
        local = c.local_address
        rid = c.router_id or local
        lines = [
            "process pykeepalived {",
            f"    run {' '.join(relay_argv)};",
            "    encoder text;",
            "}",
        ]
        for n in c.neighbors:
            lines.append(f"neighbor {n.address} {{")
            if rid:
                lines.append(f"    router-id {rid};")
            if local:
                lines.append(f"    local-address {local};")
            lines += [
                f"    local-as {c.local_as};",
                f"    peer-as {n.peer_as};",
                f"    hold-time {c.hold_time};",
                "    family { ipv4 unicast; ipv6 unicast; }",
                "    api { processes [ pykeepalived ]; }",
                "}",
            ]
        return "\n".join(lines) + "\n"

    async def start(self) -> None:
        program = _exabgp_program(self.conf)
        if program is None:
            log.error("(%s) %s: no exabgp program found (exabgp_path)", self.conf.name, SPEAKER)
            return
        import tempfile

        self._dir = Path(tempfile.mkdtemp(prefix="pka-exabgp-"))
        sock = self._dir / "api.sock"
        relay = self._dir / "relay.py"
        relay.write_text(RELAY)
        self._server = await asyncio.start_unix_server(self._accept, path=str(sock))
        conf_file = self._dir / "exabgp.conf"
        conf_file.write_text(self.render_config([sys.executable, str(relay), str(sock)]))
        env = dict(os.environ)
        env.update(
            {
                "exabgp.daemon.user": pwd.getpwuid(os.getuid()).pw_name,
                "exabgp.daemon.daemonize": "false",
                "exabgp.daemon.drop": "false",
                "exabgp.api.ack": "true",
                "exabgp.api.cli": "false",
                "exabgp.api.respawn": "false",
                "exabgp.api.terminate": "true",
                "exabgp.log.destination": "stdout",
            }
        )
        self._proc = await asyncio.create_subprocess_exec(
            program,
            str(conf_file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=str(self._dir),
        )
        log.info("(%s) ExaBGP started (pid %d)", self.conf.name, self._proc.pid)
        self._log_task = asyncio.get_running_loop().create_task(
            self._log_output(), name=f"bgp:{self.conf.name}:exabgp-log"
        )

    async def _log_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        last: deque[str] = deque(maxlen=5)
        async for raw in self._proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                last.append(line)
                log.debug("(%s) exabgp: %s", self.conf.name, line)
        rc = await self._proc.wait()
        if self._closing or self._gone:
            log.info("(%s) ExaBGP exited with status %s", self.conf.name, rc)
            return
        # Not restarted: its sessions are down, so the peers have withdrawn
        # everything; a reload with a changed bgp_speaker or a restart brings it back.
        log.error(
            "(%s) ExaBGP exited unexpectedly with status %s; nothing is announced: %s",
            self.conf.name,
            rc,
            " | ".join(last),
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            writer.close()
            return
        self._reader, self._writer = reader, writer
        self._connected.set()

    async def _command(self, line: str) -> bool:
        """Send one API command; True once ExaBGP answered ``done``."""
        if self._gone:
            return False
        try:
            await asyncio.wait_for(self._connected.wait(), ACK_TIMEOUT)
        except TimeoutError:
            log.error("(%s) ExaBGP API not connected; '%s' not sent", self.conf.name, line)
            return False
        assert self._reader is not None and self._writer is not None
        self._writer.write(line.encode() + b"\n")
        # Answers come in command order without a tag: one we stopped waiting
        # for (timeout, cancelled notify) is still owed and read first.
        self._owed += 1
        try:
            await self._writer.drain()
            while True:
                answer = await asyncio.wait_for(self._reader.readline(), ACK_TIMEOUT)
                self._owed -= 1
                if self._owed == 0 or not answer:
                    break
        except (OSError, TimeoutError) as exc:
            log.error("(%s) ExaBGP did not acknowledge '%s': %s", self.conf.name, line, exc)
            return False
        word = answer.decode(errors="replace").strip()
        if not word or word.startswith("shutdown"):
            # ExaBGP is going away (signalled with us, e.g. systemd stopping
            # the whole unit): it closes its sessions and the peers withdraw.
            if not self._gone:
                log.info("(%s) ExaBGP is shutting down; its peers withdraw", self.conf.name)
            self._gone = True
            return False
        if word != "done":
            log.error("(%s) ExaBGP answered '%s' to '%s'", self.conf.name, word, line)
            return False
        log.debug("(%s) ExaBGP: %s -> done", self.conf.name, line)
        return True

    def _announce_line(self, r: Route) -> str:
        parts = [f"announce route {r.prefix} next-hop {r.next_hop}"]
        if r.med is not None:
            parts.append(f"med {r.med}")
        if r.local_pref is not None:
            parts.append(f"local-preference {r.local_pref}")
        if r.communities:
            parts.append(f"community [ {' '.join(r.communities)} ]")
        if r.prepend:
            # An as-path given to ExaBGP is sent as written (measured with
            # ExaBGP 5.0: it does not add its own AS on eBGP), so it holds the
            # AS an eBGP UPDATE carries anyway plus the prepended copies.
            ebgp = any(n.peer_as != self.conf.local_as for n in self.conf.neighbors)
            count = r.prepend + (1 if ebgp else 0)
            parts.append(f"as-path [ {' '.join([str(self.conf.local_as)] * count)} ]")
        return " ".join(parts)

    async def apply(self, routes: dict[Prefix, Route]) -> bool:
        async with self._lock:
            for prefix, old in list(self._announced.items()):
                withdraw = f"withdraw route {prefix} next-hop {old.next_hop}"
                if prefix not in routes and await self._command(withdraw):
                    del self._announced[prefix]
            for prefix, route in routes.items():
                changed = self._announced.get(prefix) != route
                if changed and await self._command(self._announce_line(route)):
                    self._announced[prefix] = route
            # A gone ExaBGP announces nothing whatever we retry.
            return self._gone or (
                set(self._announced) == set(routes)
                and all(self._announced[p] == r for p, r in routes.items())
            )

    async def close(self) -> None:
        self._closing = True
        if self._proc is not None and self._proc.returncode is None and self._connected.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.apply({}), ACK_TIMEOUT)
        if self._writer is not None:
            self._writer.close()
        if self._proc is not None and self._proc.returncode is None:
            # SIGTERM: ExaBGP sends a Cease NOTIFICATION to every peer.
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), 10.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await self._proc.wait()
        if self._log_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._log_task, 2.0)
        if self._server is not None:
            self._server.close()
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)


class Bird(Backend):
    """Static routes in a file the user's BIRD includes, then ``birdc configure``.

    BIRD's main configuration is never touched; it holds, once::

        protocol static pykeepalived4 {
            ipv4;
            include "/etc/bird/pka4.conf";
        }
    """

    def render(self, routes: dict[Prefix, Route], version: int) -> str:
        lines = ["# written by pykeepalived (bgp_announce): do not edit"]
        for r in sorted(routes.values(), key=lambda r: str(r.prefix)):
            if r.prefix.version != version:
                continue
            dest = "blackhole" if r.next_hop == "self" else f"via {r.next_hop}"
            attrs = [f"bgp_community.add(({c.replace(':', ',')}));" for c in r.communities]
            if r.med is not None:
                attrs.append(f"bgp_med = {r.med};")
            if r.local_pref is not None:
                attrs.append(f"bgp_local_pref = {r.local_pref};")
            attrs += [f"bgp_path.prepend({self.conf.local_as});"] * r.prepend
            body = f" {{ {' '.join(attrs)} }}" if attrs else ""
            lines.append(f"route {r.prefix} {dest}{body};")
        return "\n".join(lines) + "\n"

    async def start(self) -> None:
        await self.apply({})

    async def apply(self, routes: dict[Prefix, Route]) -> bool:
        for path, version in ((self.conf.include_file, 4), (self.conf.include_file6, 6)):
            if path is None:
                continue
            tmp = f"{path}.tmp"
            try:
                Path(tmp).write_text(self.render(routes, version))
                os.replace(tmp, path)
            except OSError as exc:
                log.error("(%s) cannot write %s: %s", self.conf.name, path, exc)
                return False
        argv = [self.conf.birdc_path, "-s", self.conf.control_socket, "configure"]
        result = await run_script(argv, timeout=BIRDC_TIMEOUT, keep_output=True)
        out = result.output.strip().replace("\n", " | ")
        if not result.ok or "Reconfigur" not in result.output:
            log.error("(%s) birdc configure failed: %s %s", self.conf.name, result.error, out)
            return False
        log.debug("(%s) birdc configure: %s", self.conf.name, out)
        return True

    async def close(self) -> None:
        await self.apply({})


BACKENDS: dict[str, type[Backend]] = {"EXABGP": ExaBgp, "BIRD": Bird}


# -- the action -----------------------------------------------------------------


#: Seconds a closed announcer's speakers wait to be adopted after a reload.
LINGER = 30.0


@dataclass(eq=False)
class _Parked:
    backend: Backend
    states: dict[str, str]
    quorum: dict[str, bool]
    adopted: bool = False
    linger: asyncio.Task[None] = field(init=False)

    def adopt(self) -> Backend:
        self.adopted = True
        self.linger.cancel()
        return self.backend

    async def stop(self) -> None:
        self.linger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.linger

    async def expire(self) -> None:
        try:
            await asyncio.sleep(LINGER)
        finally:
            # Also when cancelled at the daemon's exit: stop the speaker cleanly.
            if _PARKED.get(self.backend.conf.name) is self:
                del _PARKED[self.backend.conf.name]
            if not self.adopted:
                await _close(self.backend)


def _same_speaker(a: SpeakerConf, b: SpeakerConf) -> bool:
    """Equal but for where the block is written."""
    return replace(a, place=UNKNOWN_PLACE) == replace(b, place=UNKNOWN_PLACE)


async def _close(backend: Backend) -> None:
    try:
        await backend.close()
    except Exception:
        log.exception("(%s) closing the BGP backend failed", backend.conf.name)


#: Speakers of a closed announcer, by name, until a new one adopts them.
_PARKED: dict[str, _Parked] = {}


class BgpAnnouncer(Action):
    name = "bgp"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        speakers = {s.name: s for s in _confs(config, SPEAKER) if isinstance(s, SpeakerConf)}
        self.announces: list[tuple[AnnounceConf, SpeakerConf]] = []
        vs_labels = {format_vs(vs) for vs in config.virtual_servers}
        instances = {vi.name for vi in config.vrrp_instances}
        groups = {g.name for g in config.vrrp_sync_groups}
        for a in _confs(config, ANNOUNCE):
            if not isinstance(a, AnnounceConf):
                continue
            where = f"{a.place} {ANNOUNCE} {a.name}"
            name = a.speaker or (next(iter(speakers)) if len(speakers) == 1 else None)
            if name is None or name not in speakers:
                log.error("%s: no %s '%s'; not announced", where, SPEAKER, a.speaker or "")
                continue
            for vi in a.instances:
                if vi not in instances:
                    log.error("%s: track_instance %s: no such vrrp_instance", where, vi)
            for g in a.groups:
                if g not in groups:
                    log.error("%s: track_group %s: no such vrrp_sync_group", where, g)
            for vs in a.virtual_servers:
                if vs not in vs_labels:
                    log.error("%s: track_virtual_server %s: no such virtual_server", where, vs)
            if speakers[name].backend == "BIRD" and a.prepend and speakers[name].local_as is None:
                log.error("%s: as_path_prepend needs local_as in %s %s", where, SPEAKER, name)
            self.announces.append((a, speakers[name]))
        used = {s.name for _, s in self.announces}
        self.backends: dict[str, Backend] = {
            n: BACKENDS[s.backend](s) for n, s in speakers.items() if n in used
        }
        self.states: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._initial: list[asyncio.Task[None]] = []
        self._retries: dict[str, asyncio.Task[None]] = {}
        self.quorum: dict[str, bool] = {}
        #: Seconds notify() may take: one command round per prefix.
        self.timeout = ACK_TIMEOUT * (1 + sum(len(a.prefixes) for a, _ in self.announces))

    def desired(self, speaker: str) -> dict[Prefix, Route]:
        out: dict[Prefix, Route] = {}
        for a, s in self.announces:
            if s.name != speaker:
                continue
            prepend = decide(a, self.states, self.quorum)
            if prepend is None:
                continue
            for p in a.prefixes:
                out[p] = Route(p, a.next_hop, tuple(a.communities), a.med, a.local_pref, prepend)
        return out

    def wants(self, event: StateEvent) -> bool:
        return bool(self.announces) and event.kind in (
            EventKind.INSTANCE,
            EventKind.GROUP,
            EventKind.VIRTUAL_SERVER,
        )

    async def start(self) -> None:
        for name in list(self.backends):
            parked = _PARKED.pop(name, None)
            if parked is not None and _same_speaker(parked.backend.conf, self.backends[name].conf):
                # A reload: keep the speaker and its sessions, and what the old
                # configuration knew (VRRP does not repeat unchanged states).
                self.backends[name] = parked.adopt()
                for key, value in parked.states.items():
                    self.states.setdefault(key, value)
                for key, up in parked.quorum.items():
                    self.quorum.setdefault(key, up)
                log.info("(%s) %s kept across the reload", name, SPEAKER)
            else:
                if parked is not None:
                    await parked.stop()
                await self.backends[name].start()
        # Speakers the new configuration dropped go now, not after the grace.
        for name in list(_PARKED):
            await _PARKED.pop(name).stop()
        # The first apply may wait for a starting ExaBGP (its relay connects
        # after ExaBGP parsed its configuration): not within start()'s budget.
        loop = asyncio.get_running_loop()
        for name in self.backends:
            self._initial.append(
                loop.create_task(self._sync(name, "start"), name=f"bgp:{name}:initial")
            )

    async def _sync(self, name: str, why: str) -> None:
        backend = self.backends.get(name)
        if backend is None:
            return
        # Events of different subjects are delivered concurrently (one lane
        # each): the desired set is computed under the lock, so the last
        # apply always reflects every state recorded before it.
        async with self._locks.setdefault(name, asyncio.Lock()):
            wanted = self.desired(name)
            log.debug("(%s) %s: announcing %s", name, why, sorted(map(str, wanted)))
            ok = await backend.apply(wanted)
        retry = self._retries.get(name)
        if not ok and (retry is None or retry.done()):
            # E.g. ExaBGP still starting, BIRD restarting: nothing else would
            # bring the routes in line before the next state change.
            self._retries[name] = asyncio.get_running_loop().create_task(
                self._retry(name), name=f"bgp:{name}:retry"
            )

    async def _retry(self, name: str) -> None:
        await asyncio.sleep(RETRY)
        self._retries.pop(name, None)  # so that a failing retry schedules the next
        await self._sync(name, "retry")

    async def notify(self, event: StateEvent) -> None:
        if event.kind is EventKind.INSTANCE:
            self.states[f"instance:{event.name}"] = event.state
        elif event.kind is EventKind.GROUP:
            self.states[f"group:{event.name}"] = event.state
        elif event.kind is EventKind.VIRTUAL_SERVER:
            vs = virtual_server_of(self.config, event)
            label = format_vs(vs) if vs is not None else event.name
            self.quorum[label] = event.state == "UP"
        why = f"{event.kind.value} {event.name} {event.state}"
        for name in list(self.backends):
            await self._sync(name, why)

    async def close(self) -> None:
        tasks = [*self._initial, *self._retries.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # The core builds a new announcer on reload and closes this one first,
        # with no way to tell a reload from a stop: park the speakers for the
        # next announcer to adopt; unadopted, they are torn down (withdraw all,
        # stop ExaBGP / empty BIRD's file) after LINGER seconds, or when the
        # daemon's loop ends (asyncio.run cancels the waiting task).
        loop = asyncio.get_running_loop()
        for name, backend in self.backends.items():
            old = _PARKED.pop(name, None)
            if old is not None:
                await old.stop()
            parked = _Parked(backend, dict(self.states), dict(self.quorum))
            parked.linger = loop.create_task(parked.expire(), name=f"bgp:{name}:linger")
            _PARKED[name] = parked
        self.backends = {}


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    sspec, aspec = _speaker_spec(), _announce_spec()
    grammar.add(
        "top",
        Kw(SPEAKER, _speaker(sspec), 1, 1, block=sspec, needs_block=True, multiple=True),
    )
    grammar.add(
        "top",
        Kw(ANNOUNCE, _announce(aspec), 1, 1, block=aspec, needs_block=True, multiple=True),
    )


@hookimpl
def pykeepalived_register_actions() -> dict[str, type[Notifier]]:
    return {"bgp": BgpAnnouncer}
