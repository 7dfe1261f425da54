"""Network-namespace lab for integration tests, the demo and benchmarks.

A :class:`Lab` builds a small, disposable L2 network out of Linux network
namespaces::

    pka-<tag>-br   bridge namespace: bridge ``br0`` plus one veth end per host
    pka-<tag>-h1   host namespace: ``eth0`` = 192.0.2.11/24, 2001:db8::11/64
    pka-<tag>-h2   host namespace: ``eth0`` = 192.0.2.12/24, 2001:db8::12/64
    ...

Host number ``i`` (1-based, in creation order, extra hosts included) gets
``192.0.2.(10+i)/24`` and ``2001:db8::(10+i)/64``.  Host addresses therefore
stay within ``.11``-``.99``; addresses from ``.100`` up are free for virtual
addresses (see :meth:`Lab.vip4` / :meth:`Lab.vip6`).

Everything lives in namespaces the lab creates itself: the root namespace,
its interfaces and its routing are never touched, and only documentation
address ranges are used.  ``<tag>`` encodes the creating process id plus a
random part, so parallel labs never clash and :func:`cleanup_stale` can tell
leftovers of dead processes from labs that are still in use.

Usage::

    with Lab(n_hosts=2) as lab:
        a, b = lab.hosts
        a.run(["ping", "-c1", b.ip4])
        daemon = a.popen(["some-daemon", "--foreground"])
        wait_until(lambda: "192.0.2.100" in a.addresses())
    # processes killed, namespaces deleted -- also when the body raised

The lab methods are short, blocking ``ip`` calls and are fine to call from
async code; :func:`wait_for` polls sync or async predicates without blocking
the event loop, and :meth:`Host.arun` runs a command asynchronously.

This module deliberately imports only light stdlib modules (no pytest): the
pytest plugin in :mod:`pykeepalived.testing.pytest_plugin` imports it lazily.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

__all__ = [
    "DEFAULT_PREFIX",
    "Host",
    "Lab",
    "LabError",
    "cleanup_stale",
    "free_port",
    "requires_netns",
    "wait_for",
    "wait_until",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Every namespace created by this module starts with this prefix.
DEFAULT_PREFIX = "pka-"
NETNS_DIR = Path("/run/netns")
#: Bridge device name inside the bridge namespace.
BRIDGE = "br0"
#: No STP / forward delay (ports forward at once); no multicast snooping, so
#: VRRP multicast (224.0.0.18, ff02::12) is always flooded to every port.
BRIDGE_OPTS = ("forward_delay", "0", "stp_state", "0", "mcast_snooping", "0")
#: Interface name inside every host namespace.
HOST_DEV = "eth0"
#: Seconds a tracked process gets between SIGTERM and SIGKILL at teardown.
KILL_GRACE = 2.0
#: Nftables table used by :meth:`Host.drop_random`.
LOSS_TABLE = "pka_loss"
IP = "ip"
#: Age (s) after which a ``pka-`` namespace without owner pid counts as stale.
UNOWNED_STALE_AGE = 600.0


class LabError(RuntimeError):
    """A lab command failed; the message includes the command and its stderr."""


#: How long a lab command may take before it counts as hung: a guard, not a
#: bound.  While another program adds and removes hundreds of addresses (a
#: keepalived flap storm in bench/scale beside the suite), the kernel's rtnl
#: lock made a plain ``ip addr add`` take more than 10 s.
COMMAND_TIMEOUT = 60.0


def _run(
    cmd: list[str],
    *,
    check: bool = True,
    timeout: float | None = COMMAND_TIMEOUT,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed (rc={proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
        )
    return proc


# --------------------------------------------------------------------------
# Process helpers


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0  # pragma: no cover


def _proc_start_time(pid: int) -> float | None:
    """Wall-clock start time of ``pid`` (None if it does not exist)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces/parens: split after the last ')'.
    fields = data[data.rindex(")") + 2 :].split()
    ticks = int(fields[19])  # field 22 overall: starttime in clock ticks
    return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


def _signal(pid: int, sig: int, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _netns_pids(netns: str) -> list[int]:
    proc = _run([IP, "netns", "pids", netns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit() and int(p) != os.getpid()]


def _kill_netns_processes(netns_names: list[str], grace: float) -> None:
    """SIGTERM, then SIGKILL, every process still living in the namespaces."""
    pids = [pid for ns in netns_names for pid in _netns_pids(ns)]
    if not pids:
        return
    for pid in pids:
        _signal(pid, signal.SIGTERM, group=False)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return
        time.sleep(0.02)
    for pid in pids:
        _signal(pid, signal.SIGKILL, group=False)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2 :].split()[0] != "Z"


# --------------------------------------------------------------------------
# Namespace helpers


def _netns_add(name: str) -> None:
    _run([IP, "netns", "add", name])


def _netns_del(name: str) -> None:
    proc = _run([IP, "netns", "del", name], check=False)
    if proc.returncode != 0 and (NETNS_DIR / name).exists():
        log.warning("could not delete netns %s: %s", name, proc.stderr.strip())


def _make_tag() -> str:
    """``<pid base36>x<4 hex>``: unique per lab, pid recoverable for cleanup."""
    return f"{_b36(os.getpid())}x{secrets.token_hex(2)}"


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _owner_pid(name: str, prefix: str) -> int | None:
    """The creating pid encoded in a lab namespace name, if it has one."""
    rest = name[len(prefix) :]
    tag = rest.split("-", 1)[0]
    # The pid is base36, so it may itself contain "x"; the suffix is hex.
    pid_part, sep, _ = tag.rpartition("x")
    if not sep or not pid_part:
        return None
    try:
        return int(pid_part, 36)
    except ValueError:
        return None


@functools.cache
def requires_netns() -> str | None:
    """Why network-namespace labs cannot run here, or None if they can.

    The reason names the missing capability, so it can be used verbatim as a
    pytest skip reason.  The probe (create a namespace with a bridge and a
    veth pair, delete it) runs once per process.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN + CAP_NET_ADMIN); not running as root"
    if shutil.which(IP) is None:
        return "iproute2 `ip` command not found"
    probe = f"{DEFAULT_PREFIX}{_make_tag()}-probe"
    try:
        _run([IP, "netns", "add", probe])
    except LabError as exc:
        return f"`ip netns add` failed: {exc}"
    try:
        for cmd, what in (
            (["link", "add", BRIDGE, "type", "bridge"], "bridge devices"),
            (["link", "add", "pa", "type", "veth", "peer", "name", "pb"], "veth pairs"),
        ):
            proc = _run([IP, "-n", probe, *cmd], check=False)
            if proc.returncode != 0:
                return f"cannot create {what} in a namespace: {proc.stderr.strip()}"
    finally:
        _netns_del(probe)
    return None


def cleanup_stale(prefix: str = DEFAULT_PREFIX, *, older_than: float | None = None) -> list[str]:
    """Delete namespaces left behind by crashed runs; return their names.

    A namespace named ``<prefix>...`` is stale when it was created before
    ``older_than`` (a :func:`time.time` timestamp; default: when this process
    started) and the process that created it -- encoded in the name by
    :class:`Lab` -- is gone.  Namespaces of labs in live processes (this one,
    parallel pytest sessions, ...) are left alone.  Namespaces with the prefix
    but no owner pid in the name are removed only when they are also older
    than :data:`UNOWNED_STALE_AGE` seconds.  Processes still running inside a
    stale namespace are killed first.
    """
    try:
        entries = list(NETNS_DIR.iterdir())
    except OSError:
        return []
    if older_than is None:
        older_than = _proc_start_time(os.getpid()) or time.time()
    removed: list[str] = []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix):
            continue
        try:
            created = entry.lstat().st_mtime
        except OSError:
            continue
        if created >= older_than:
            continue
        owner = _owner_pid(name, prefix)
        if owner is None:
            # Not made by Lab: only remove it once it is clearly abandoned.
            if created > time.time() - UNOWNED_STALE_AGE:
                continue
        elif owner == os.getpid():
            continue  # ours: the owning Lab (or atexit) cleans it up
        else:
            owner_start = _proc_start_time(owner)
            # Owner alive and older than the namespace: it may still use it.
            if owner_start is not None and owner_start <= created + 1.0 and _alive(owner):
                continue
        _kill_netns_processes([name], grace=0.5)
        _netns_del(name)
        removed.append(name)
    if removed:
        log.info("removed stale namespaces: %s", ", ".join(removed))
    return removed


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is currently free on ``host`` (root namespace).

    Inside a lab host namespace every port is free; this is for services
    that the test process itself binds.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------
# Polling


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Poll a sync predicate until it returns a truthy value; return it.

    Raises :class:`TimeoutError` (with ``message`` if given) otherwise.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s: {predicate!r}")
        time.sleep(interval)


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 5.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Async poll of a sync or async predicate until it is truthy; return it.

    Example: ``await wait_for(lambda: vip in host.addresses(), timeout=5)``.
    Raises :class:`TimeoutError` (with ``message`` if given) otherwise.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        result: T = await value if inspect.isawaitable(value) else value
        if result:
            return result
        if loop.time() >= deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s: {predicate!r}")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------
# Lab


class Host:
    """One host namespace of a :class:`Lab` with interface ``eth0``."""

    def __init__(self, lab: Lab, name: str, index: int, netns: str, port: str) -> None:
        self.lab = lab
        #: Lab-local name, e.g. ``"h1"`` or ``"client"``.
        self.name = name
        #: 1-based host number; the addresses are derived from it.
        self.index = index
        #: Namespace name (usable with ``ip netns exec`` / ``ip -n``).
        self.netns = netns
        #: Bridge-side veth name (inside the bridge namespace).
        self.bridge_port = port
        self.dev = HOST_DEV
        self.ip4 = f"192.0.2.{10 + index}"
        self.ip6 = f"2001:db8::{10 + index}"
        self.prefix4 = 24
        self.prefix6 = 64

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r}, ip4={self.ip4!r}, ip6={self.ip6!r})"

    # -- commands ----------------------------------------------------------

    def exec_prefix(self) -> list[str]:
        """Command prefix that runs the rest inside this namespace."""
        return [IP, "netns", "exec", self.netns]

    def run(
        self,
        cmd: list[str],
        check: bool = True,
        timeout: float | None = COMMAND_TIMEOUT,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the namespace, capture text output.

        Raises :class:`LabError` on a non-zero exit when ``check`` is true.
        """
        return _run([*self.exec_prefix(), *cmd], check=check, timeout=timeout, input=input)

    async def arun(
        self, cmd: list[str], check: bool = True, timeout: float | None = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Async :meth:`run` (does not block the event loop)."""
        import asyncio

        full = [*self.exec_prefix(), *cmd]
        proc = await asyncio.create_subprocess_exec(
            *full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise LabError(f"timed out after {timeout}s: {' '.join(full)}") from exc
        rc = proc.returncode if proc.returncode is not None else -1
        result = subprocess.CompletedProcess(full, rc, out.decode(), err.decode())
        if check and rc != 0:
            raise LabError(f"command failed (rc={rc}): {' '.join(full)}\n{result.stderr.strip()}")
        return result

    def popen(self, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` in the namespace; the lab kills it at teardown.

        The process gets its own session/process group (unless the caller
        passes ``start_new_session=False``) and teardown signals the whole
        group: SIGTERM, then SIGKILL after :data:`KILL_GRACE` seconds.
        ``ip netns exec`` execs the command, so ``proc.pid`` is its pid.
        """
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen([*self.exec_prefix(), *cmd], **kw)
        self.lab._track(proc, group=bool(kw["start_new_session"]))
        return proc

    def ping(self, dst: str, count: int = 1, timeout: float = 1.0) -> bool:
        """True if ``dst`` (v4 or v6) answers an ICMP echo from this host.

        Sends ``count`` echo requests, waiting up to ``timeout`` seconds for
        each reply; succeeds on the first reply.  Implemented with a raw
        socket in a short Python subprocess, because iputils ``ping`` is not
        necessarily installed.
        """
        proc = self.run(
            [sys.executable, "-I", "-S", "-c", _PING_SCRIPT, dst, str(count), str(timeout)],
            check=False,
            timeout=count * timeout + 10,
        )
        return proc.returncode == 0

    # -- addresses and links -----------------------------------------------

    def addresses(self, dev: str = HOST_DEV, with_prefix: bool = False) -> set[str]:
        """Addresses on ``dev`` (v4 and v6, incl. link-local), e.g. ``{"192.0.2.11", ...}``.

        With ``with_prefix`` the entries look like ``"192.0.2.11/24"``.
        """
        proc = _run([IP, "-n", self.netns, "-j", "addr", "show", "dev", dev])
        return _parse_addresses(proc.stdout, with_prefix)

    async def aaddresses(self, dev: str = HOST_DEV, with_prefix: bool = False) -> set[str]:
        """Async :meth:`addresses`."""
        import asyncio

        proc = await asyncio.create_subprocess_exec(
            IP,
            "-n",
            self.netns,
            "-j",
            "addr",
            "show",
            "dev",
            dev,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise LabError(f"ip addr show dev {dev} in {self.netns} failed: {err.decode().strip()}")
        return _parse_addresses(out.decode(), with_prefix)

    def link_set(self, dev: str, up: bool) -> None:
        """Set ``dev`` in this namespace up or down."""
        _run([IP, "-n", self.netns, "link", "set", "dev", dev, "up" if up else "down"])

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ip -n <netns> <args>``."""
        return _run([IP, "-n", self.netns, *args], check=check)

    # -- nftables ----------------------------------------------------------

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset (``nft -f -`` syntax) in the namespace."""
        self.run(["nft", "-f", "-"], input=ruleset)

    def drop_random(self, percent: int, proto: Literal["vrrp", "all"] = "vrrp") -> None:
        """Drop ``percent`` % of incoming packets (VRRP only, or all but loopback).

        Uses ``numgen random mod 100 < N drop`` in a dedicated table
        ``inet pka_loss``; calling it again replaces the rule, and
        ``percent=0`` (or :meth:`clear_drop`) removes it.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be within 0..100, got {percent}")
        if proto not in ("vrrp", "all"):
            raise ValueError(f"proto must be 'vrrp' or 'all', got {proto!r}")
        self.clear_drop()
        if percent == 0:
            return
        match = "meta l4proto 112" if proto == "vrrp" else 'iifname != "lo"'
        # numgen yields 0..99, so "< 100" is out of range for nft: plain drop.
        rnd = "" if percent == 100 else f"numgen random mod 100 < {percent} "
        self.nft(
            f"table inet {LOSS_TABLE} {{\n"
            f"  chain input {{\n"
            f"    type filter hook input priority -300; policy accept;\n"
            f"    {match} {rnd}counter drop\n"
            f"  }}\n"
            f"}}\n"
        )

    def clear_drop(self) -> None:
        """Remove the packet-loss rule installed by :meth:`drop_random`."""
        self.run(["nft", "delete", "table", "inet", LOSS_TABLE], check=False)


# ICMP echo with a raw socket: argv = dst count timeout; exit 0 on a reply.
_PING_SCRIPT = r"""
import os, select, socket, struct, sys, time
dst, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
v6 = ":" in dst
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    req, rep = 128, 129
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    req, rep = 8, 0
ident = os.getpid() & 0xFFFF
def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF)
    t += t >> 16
    return ~t & 0xFFFF
for seq in range(1, count + 1):
    payload = b"pykeepalived-lab"
    hdr = struct.pack("!BBHHH", req, 0, 0, ident, seq)
    if not v6:
        hdr = struct.pack("!BBHHH", req, 0, csum(hdr + payload), ident, seq)
    try:
        s.sendto(hdr + payload, (dst, 0))
    except OSError:
        time.sleep(timeout)
        continue
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        data, _ = s.recvfrom(65535)
        if not v6:
            data = data[(data[0] & 0x0F) * 4 :]
        if len(data) >= 8:
            t, _c, _k, i, q = struct.unpack("!BBHHH", data[:8])
            if t == rep and i == ident and q == seq:
                sys.exit(0)
sys.exit(1)
"""


def _parse_addresses(text: str, with_prefix: bool) -> set[str]:
    out: set[str] = set()
    for link in json.loads(text or "[]"):
        for a in link.get("addr_info", []):
            if "local" not in a:
                continue
            out.add(f"{a['local']}/{a['prefixlen']}" if with_prefix else str(a["local"]))
    return out


_LIVE_LABS: set[Lab] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _atexit_cleanup() -> None:
    with _LIVE_LOCK:
        labs = list(_LIVE_LABS)
    for lab in labs:
        with contextlib.suppress(Exception):
            lab.close()


class Lab:
    """A bridge namespace plus ``n_hosts`` host namespaces (see module doc).

    Use as a context manager, or call :meth:`start` / :meth:`close`.
    Teardown always kills tracked processes (and anything else still running
    in the lab's namespaces) and deletes every namespace the lab created; an
    ``atexit`` hook covers labs that were never closed.
    """

    def __init__(self, n_hosts: int = 2, *, prefix: str = DEFAULT_PREFIX) -> None:
        if n_hosts < 0:
            raise ValueError("n_hosts must be >= 0")
        self.n_hosts = n_hosts
        self.prefix = prefix
        self.tag = _make_tag()
        self.name = f"{prefix}{self.tag}"
        #: Name of the namespace holding the bridge ``br0``.
        self.bridge_netns = f"{self.name}-br"
        self.hosts: list[Host] = []
        self._namespaces: list[str] = []
        self._procs: list[tuple[subprocess.Popen[Any], bool]] = []
        self._owner_pid = os.getpid()
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, hosts={[h.name for h in self.hosts]})"

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Lab:
        """Create the bridge and the hosts (idempotent); returns ``self``."""
        if self._started:
            return self
        if self._closed:
            raise LabError("lab already closed")
        self._started = True
        with _LIVE_LOCK:
            _LIVE_LABS.add(self)
        try:
            ns = self.bridge_netns
            self._add_netns(ns)
            _run([IP, "-n", ns, "link", "set", "lo", "up"])
            _run([IP, "-n", ns, "link", "add", BRIDGE, "type", "bridge", *BRIDGE_OPTS])
            _run([IP, "-n", ns, "link", "set", BRIDGE, "up"])
            for i in range(1, self.n_hosts + 1):
                self.add_host(f"h{i}")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill processes and delete the namespaces (idempotent, never raises)."""
        if self._closed:
            return
        if os.getpid() != self._owner_pid:
            return  # forked child: the parent owns the lab
        self._closed = True
        try:
            self._kill_tracked()
            hosts_first = [n for n in self._namespaces if n != self.bridge_netns]
            if self.bridge_netns in self._namespaces:
                hosts_first.append(self.bridge_netns)
            try:
                _kill_netns_processes(hosts_first, KILL_GRACE)
            except Exception as exc:  # pragma: no cover - defensive
                log.warning("killing processes in %s failed: %s", self.name, exc)
            for name in hosts_first:
                try:
                    _netns_del(name)
                except Exception as exc:  # pragma: no cover - defensive
                    log.warning("deleting netns %s failed: %s", name, exc)
        finally:
            self._namespaces.clear()
            with _LIVE_LOCK:
                _LIVE_LABS.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def namespaces(self) -> list[str]:
        """Namespaces currently owned by this lab (bridge first)."""
        return list(self._namespaces)

    def _add_netns(self, name: str) -> None:
        _netns_add(name)
        self._namespaces.append(name)

    def _track(self, proc: subprocess.Popen[Any], group: bool) -> None:
        self._procs.append((proc, group))

    def _kill_tracked(self) -> None:
        procs, self._procs = self._procs, []
        running = [(p, g) for p, g in procs if p.poll() is None]
        for p, g in running:
            _signal(p.pid, signal.SIGTERM, group=g)
        deadline = time.monotonic() + KILL_GRACE
        for p, _ in running:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # SIGKILL whatever survived, including leftovers of the process group.
        for p, g in running:
            _signal(p.pid, signal.SIGKILL, group=g)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=2.0)

    # -- hosts -------------------------------------------------------------

    def add_host(self, name: str) -> Host:
        """Add a host namespace (e.g. ``"client"``, ``"rs1"``) on the bridge.

        It gets the next host number and the addresses derived from it.
        """
        if not self._started:
            raise LabError("call start() (or use the lab as a context manager) first")
        if self._closed:
            raise LabError("lab already closed")
        if any(h.name == name for h in self.hosts):
            raise ValueError(f"host {name!r} already exists in {self.name}")
        index = len(self.hosts) + 1
        if index > 89:
            raise LabError("at most 89 hosts per lab (addresses .11-.99)")
        safe = "".join(c if c.isalnum() else "_" for c in name)[:32]
        netns = f"{self.name}-{safe}"
        port = f"v{index}"
        host = Host(self, name, index, netns, port)
        br = self.bridge_netns
        self._add_netns(netns)
        # DAD off before eth0 appears so its link-local is usable at once.
        _run(
            [
                *host.exec_prefix(),
                *("sysctl", "-q", "-w"),
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_ra=0",
                "net.ipv6.conf.default.accept_ra=0",
            ]
        )
        _run([IP, "-n", netns, "link", "set", "lo", "up"])
        _run(
            [
                IP,
                "-n",
                br,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                HOST_DEV,
                "netns",
                netns,
            ]
        )
        _run([IP, "-n", br, "link", "set", port, "master", BRIDGE, "up"])
        _run(
            [
                *host.exec_prefix(),
                *("sysctl", "-q", "-w"),
                f"net.ipv6.conf.{HOST_DEV}.accept_dad=0",
                f"net.ipv6.conf.{HOST_DEV}.accept_ra=0",
            ]
        )
        _run([IP, "-n", netns, "addr", "add", f"{host.ip4}/{host.prefix4}", "dev", HOST_DEV])
        _run(
            [IP, "-n", netns, "addr", "add", f"{host.ip6}/{host.prefix6}", "dev", HOST_DEV, "nodad"]
        )
        _run([IP, "-n", netns, "link", "set", HOST_DEV, "up"])
        self.hosts.append(host)
        return host

    def host(self, name: str) -> Host:
        """The host called ``name`` (``"h1"``, ``"client"``, ...)."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def __getitem__(self, key: int | str) -> Host:
        """``lab[0]`` is the first host, ``lab["client"]`` a host by name."""
        return self.hosts[key] if isinstance(key, int) else self.host(key)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    # -- free addresses ----------------------------------------------------

    @staticmethod
    def vip4(k: int = 0) -> str:
        """A free IPv4 address on the lab subnet for VIPs: ``192.0.2.(100+k)``."""
        if not 0 <= k <= 154:
            raise ValueError("k must be within 0..154")
        return f"192.0.2.{100 + k}"

    @staticmethod
    def vip6(k: int = 0) -> str:
        """A free IPv6 address on the lab subnet for VIPs: ``2001:db8::1:<k>``."""
        if not 0 <= k <= 0xFFFF:
            raise ValueError("k must be within 0..65535")
        return f"2001:db8::1:{k:x}"
