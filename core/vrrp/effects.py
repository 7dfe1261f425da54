"""What a VRRP instance does to the host: VIPs, routes, rules, GARP and NA.

Kernel operations are idempotent and branch on errno, never on message
text: adding an address that is already there, or deleting one that is
gone, is not an error (a restart after a crash finds its VIPs in place).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import re
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pykeepalived.core.config.model import Route, Rule, VirtualAddress
from pykeepalived.core.vrrp.rtnl import Rtnl, RtnlError

log = logging.getLogger("pykeepalived.vrrp")

#: Seconds one ``nft -f`` batch may take.
NFT_TIMEOUT = 5.0


def run_nft(script: str, *, quiet: bool = False) -> bool | None:
    """Run an ``nft -f -`` batch (start-up and stop work, never per advert).

    True when applied; False when nft refused it or failed (logged unless
    ``quiet``); None when nft is not installed, so that each caller can say
    once what is missing without it."""
    try:
        res = subprocess.run(
            ["nft", "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:  # not installed (exec searched PATH as shutil.which would)
        return None
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nft failed: %s", exc)
        return False
    if res.returncode != 0:
        if not quiet:
            log.warning("nft failed: %s", res.stderr.strip())
        return False
    return True


ETH_P_ARP = 0x0806
ICMPV6_NA = 136
ALL_NODES6 = "ff02::1"
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200

#: Seconds one ``ip`` process may run before it is killed (a hung ``ip``
#: must not wedge the queue); a batch of hundreds of commands takes ms.
IP_TIMEOUT = 5.0
#: Commands per ``ip -batch`` process at most, so one timeout covers a
#: bounded amount of work.
IP_BATCH_MAX = 500
#: Default bound for :meth:`Netlink.flush`.
DRAIN_TIMEOUT = 10.0
#: Default bound for :meth:`Netlink.close`: it comes at the very end of the
#: daemon's shutdown, after ``VrrpManager.stop`` has waited for the removals,
#: so it only catches stragglers and must not double the shutdown time.
CLOSE_TIMEOUT = 5.0
#: ip(8) splits batch lines itself (quotes, backslashes, ``#`` comments); a
#: command with a word it would split differently runs as an argv of its own.
_BATCH_UNSAFE = frozenset("\"'#\\ \t\r\n\v\f")
#: Follows every command in a batch.  ``ip -o`` prints exactly one line for
#: it, so the lines on stdout count the commands ip got through: ip's parser
#: calls exit() on a bad word, which ends the whole batch, and that is the
#: only way to know which command it was on and which never ran.
_SENTINEL = "link show dev lo"
_FAILED = re.compile(r"Command failed -:(\d+)")


class Netlink:
    """The kernel operations of VRRP instances, in the daemon's namespace.

    Addresses go through :class:`~.rtnl.Rtnl` (a small rtnetlink client,
    opened on first use) rather than pyroute2, which a VRRP-only daemon
    then never imports.
    """

    def __init__(self, ip: Sequence[str] = ("ip",)) -> None:
        self.rtnl = Rtnl()
        self._gratuitous: GratuitousSender | None = None
        #: Routes and rules, queued to a thread of their own: ``ip`` takes
        #: milliseconds per call, which the VRRP loop cannot spare.  ``ip``
        #: is the argv prefix of ip(8) (tests pass ``("ip", "-n", NETNS)``).
        self.ip_worker = IpWorker(ip)

    def gratuitous(self, dev: str, mac: bytes, addresses: Iterable[str]) -> int:
        """GARP/NA for ``addresses`` on ``dev`` through shared sockets."""
        if self._gratuitous is None:
            self._gratuitous = GratuitousSender()
        return self._gratuitous.send(dev, mac, addresses)

    def forget_device(self, dev: str) -> None:
        """``dev`` is going away (a VMAC being deleted): close its sockets."""
        if self._gratuitous is not None:
            self._gratuitous.forget(dev)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Apply what is still queued (at most ``timeout`` s), close sockets."""
        self.ip_worker.close(timeout)
        if self._gratuitous is not None:
            self._gratuitous.close()
            self._gratuitous = None
        self.rtnl.close()

    def ifindex(self, name: str) -> int | None:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            return None

    def mac(self, name: str) -> bytes | None:
        try:
            with open(f"/sys/class/net/{name}/address") as fh:
                return bytes.fromhex(fh.read().strip().replace(":", ""))
        except OSError:
            return None

    def primary_address(self, name: str, family: int) -> str | None:
        """The interface's first address of ``family`` (link-local for IPv6)."""
        idx = self.ifindex(name)
        if idx is None:
            return None
        fam = socket.AF_INET if family == 4 else socket.AF_INET6
        try:
            found = self.rtnl.get_addresses(fam, idx)
        except OSError as exc:
            log.error("cannot list the addresses of %s: %s", name, exc)
            return None
        for info in found:
            addr = info.address
            if addr is None:
                continue
            if family == 6 and not ipaddress.ip_address(addr).is_link_local:
                continue
            return addr
        return None

    def link_up(self, name: str) -> bool:
        try:
            with open(f"/sys/class/net/{name}/operstate") as fh:
                state = fh.read().strip()
        except OSError:
            return False
        return state in ("up", "unknown")

    # -- addresses ---------------------------------------------------------------
    def add_address(self, vip: VirtualAddress, default_dev: str) -> bool:
        dev = vip.dev or default_dev
        idx = self.ifindex(dev)
        if idx is None:
            log.error("cannot add %s: no interface %s", vip.address, dev)
            return False
        flags = 0
        if vip.address.version == 6:
            flags |= IFA_F_NODAD  # a VIP is owned by VRRP, not by DAD
        if vip.noprefixroute:
            flags |= IFA_F_NOPREFIXROUTE
        scope = _scope_value(vip.scope)
        try:
            self.rtnl.add_address(
                idx,
                str(vip.address.ip),
                vip.address.network.prefixlen,
                label=vip.label or None,
                broadcast=str(vip.brd) if vip.brd is not None else None,
                scope=scope,
                flags=flags,
            )
        except RtnlError as exc:
            if exc.code != errno.EEXIST:
                log.error("cannot add %s to %s: %s", vip.address, dev, exc.strerror)
                return False
        except OSError as exc:
            log.error("cannot add %s to %s: %s", vip.address, dev, exc)
            return False
        return True

    def del_address(self, vip: VirtualAddress, default_dev: str) -> None:
        dev = vip.dev or default_dev
        idx = self.ifindex(dev)
        if idx is None:
            return
        try:
            self.rtnl.del_address(idx, str(vip.address.ip), vip.address.network.prefixlen)
        except RtnlError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                log.error("cannot remove %s from %s: %s", vip.address, dev, exc.strerror)
        except OSError as exc:
            log.error("cannot remove %s from %s: %s", vip.address, dev, exc)

    def has_address(self, address: str, dev: str) -> bool:
        idx = self.ifindex(dev)
        if idx is None:
            return False
        want = ipaddress.ip_address(address)
        return any(
            info.address is not None and ipaddress.ip_address(info.address) == want
            for info in self.rtnl.get_addresses(0, idx)
        )

    # -- routes and rules: applied with ip(8) words, as keepalived documents them --
    def routes(self, action: str, routes: Iterable[Route], dev: str) -> None:
        """Queue ``ip route replace`` (``action`` "add") or ``ip route del``
        for each route; returns at once (see :class:`IpWorker`)."""
        cmds = []
        for r in routes:
            words = list(r.words)
            if "dev" not in words and r.via is None:
                words += ["dev", dev]
            words = [w for w in words if w != "no_track"]
            family = _family_of(words, r.dest)
            verb = "replace" if action == "add" else "del"
            cmds.append(IpCommand(family, "route", action, ("route", verb, *words)))
        self.ip_worker.submit(cmds)

    def rules(self, action: str, rules: Iterable[Rule]) -> None:
        """Queue ``ip rule add``/``del`` for each rule; returns at once."""
        cmds = []
        for r in rules:
            words = [w for w in r.words if w != "no_track"]
            cmds.append(IpCommand(_family_of(words), "rule", action, ("rule", action, *words)))
        self.ip_worker.submit(cmds)

    def flush(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Wait (blocking, at most ``timeout`` s) until every route and rule
        queued so far has been applied; False (logged) if some are left."""
        return self.ip_worker.flush(timeout)


# -- routes and rules through ip(8), off the VRRP loop ---------------------------------


@dataclass(frozen=True)
class IpCommand:
    """One route/rule command: ``ip -<family> <args...>``."""

    family: int  #: 4 or 6: which ``ip -4`` / ``ip -6`` batch it joins
    kind: str  #: "route" or "rule"
    action: str  #: "add" or "del", as the caller asked
    args: tuple[str, ...]  #: ip's words after the global options

    @property
    def shown(self) -> str:
        """The command as logged: the ip(8) command line it stands for."""
        if self.kind == "rule":  # written without a family, as it always was
            return " ".join(("ip", *self.args))
        return " ".join(("ip", f"-{self.family}", *self.args))

    @property
    def batchable(self) -> bool:
        return all(w and not _BATCH_UNSAFE.intersection(w) for w in self.args)

    def worth_logging(self, error: str) -> bool:
        """A failed ``del`` is not an error (the route went with its VIP or
        interface); a rule that is already there is not either."""
        if self.action != "add":
            return False
        return not (self.kind == "rule" and "File exists" in error)


class IpWorker:
    """Runs queued ip(8) route/rule commands strictly in order, off the loop.

    One daemon thread, not asyncio subprocesses on the VRRP loop: starting a
    process forks on the calling thread either way (and Python 3.11's child
    watcher adds a thread per child anyway), and :meth:`flush` must wait
    synchronously from ``VrrpManager.stop`` -- which runs *on* the VRRP
    loop -- and from ``Netlink.close`` on the main loop; a thread can be
    waited for from any thread, a loop's subprocess not from its own loop.
    The thread only waits on ``ip`` (the GIL is released meanwhile), so the
    loop keeps its timers.

    Consecutive commands are run by one ``ip -force -batch -`` process per
    address family (IPv4 and IPv6 routes and rules are independent kernel
    tables, so only the order within a family is kept); whatever arrives
    while a batch runs forms the next one, which is what makes a mass
    takeover cheap.  VIPs are added synchronously before their routes are
    queued, so FIFO order is all a route needs; a MASTER -> BACKUP flap
    queues the ``del`` after the ``add`` and so ends without the route.
    """

    def __init__(
        self,
        ip: Sequence[str] = ("ip",),
        *,
        timeout: float = IP_TIMEOUT,
        batch_max: int = IP_BATCH_MAX,
    ) -> None:
        self.ip = tuple(ip)
        self.timeout = timeout
        self.batch_max = batch_max
        self._cond = threading.Condition()
        self._queue: deque[IpCommand] = deque()
        self._queued = 0  # commands ever submitted
        self._done = 0  # commands carried out (applied, failed or given up)
        self._thread: threading.Thread | None = None
        self._closing = False
        #: ip processes started (tests and benchmarks read it).
        self.processes = 0

    def submit(self, cmds: Sequence[IpCommand]) -> None:
        """Queue ``cmds`` behind everything queued before; never blocks."""
        if not cmds:
            return
        with self._cond:
            self._queue.extend(cmds)
            self._queued += len(cmds)
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._main, name="vrrp-ip", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def pending(self) -> int:
        """Commands queued or running."""
        with self._cond:
            return self._queued - self._done

    def flush(self, timeout: float) -> bool:
        """Block until everything queued so far is done, at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error(
                        "%d route/rule commands still pending after %gs",
                        target - self._done,
                        timeout,
                    )
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float) -> bool:
        """:meth:`flush`, then let the thread end (a later submit restarts it)."""
        drained = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if drained and thread is not None:
            thread.join(1.0)
        return drained

    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._closing:
                        self._thread = None
                        return
                    self._cond.wait()
                n = min(len(self._queue), self.batch_max)
                todo = [self._queue.popleft() for _ in range(n)]
            try:
                for family in (4, 6):
                    self._run_family([c for c in todo if c.family == family])
            except Exception:  # the queue must go on whatever happened
                log.exception("applying routes/rules failed")
            with self._cond:
                self._done += n
                self._cond.notify_all()

    def _run_family(self, cmds: list[IpCommand]) -> None:
        """Run ``cmds`` (one family) in order: batches, broken at commands
        that cannot be batched."""
        batch: list[IpCommand] = []
        for cmd in cmds:
            if cmd.batchable:
                batch.append(cmd)
                continue
            self._run_batch(batch)
            batch = []
            self._run_alone(cmd)
        self._run_batch(batch)

    def _ip(self, argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[str] | str:
        """Run ip; its result, or why it could not run (as the error to log)."""
        self.processes += 1
        try:
            return subprocess.run(
                argv,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                # IpCommand.worth_logging reads ip's message ("File
                # exists"), so its language is fixed.
                env={**os.environ, "LC_ALL": "C"},
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"ip did not finish within {self.timeout:g}s and was killed; may not be applied"
        except OSError as exc:
            return f"cannot run {argv[0]}: {exc.strerror or exc}"

    def _run_alone(self, cmd: IpCommand) -> None:
        res = self._ip([*self.ip, f"-{cmd.family}", *cmd.args], None)
        if isinstance(res, str):
            self._failed(cmd, res, always=True)
        elif res.returncode != 0:
            self._failed(cmd, res.stderr.strip())

    def _run_batch(self, cmds: list[IpCommand]) -> None:
        family = cmds[0].family if cmds else 4
        argv = [*self.ip, "-o", f"-{family}", "-force", "-batch", "-"]
        while cmds:
            stdin = "".join(f"{' '.join(c.args)}\n{_SENTINEL}\n" for c in cmds)
            res = self._ip(argv, stdin)
            if isinstance(res, str):
                for c in cmds:
                    self._failed(c, res, always=True)
                return
            # Command i is batch line 2i+1, its sentinel line 2i+2.  ip prints
            # a command's errors, then "Command failed -:LINE".
            through = res.stdout.count("\n")
            errors: dict[int, str] = {}
            text: list[str] = []
            for line in res.stderr.splitlines():
                m = _FAILED.fullmatch(line.strip())
                if m is None:
                    text.append(line)
                    continue
                lineno = int(m.group(1))
                if lineno % 2:
                    errors[(lineno - 1) // 2] = "\n".join(text).strip()
                else:  # the sentinel failed (no lo?): its command did run
                    through += 1
                text = []
            for i, c in enumerate(cmds[:through]):
                if i in errors:
                    self._failed(c, errors[i])
            if through >= len(cmds):
                return
            # ip exited on command ``through`` (its parser calls exit() on a
            # bad word); the commands after it never ran: go on with them.
            why = "\n".join(text).strip() or f"ip exited with status {res.returncode}"
            self._failed(cmds[through], why)
            cmds = cmds[through + 1 :]

    @staticmethod
    def _failed(cmd: IpCommand, error: str, *, always: bool = False) -> None:
        if always or cmd.worth_logging(error):
            log.error("%s: %s", cmd.shown, error)


def _family_of(words: Sequence[str], dest: str | None = None) -> int:
    """4 or 6: the family of ``dest``, else of the first address among
    ``words`` ("default via 2001:db8::1"); IPv4 when there is none, as ip(8)."""
    for word in (dest, *words) if dest is not None else words:
        family = _address_family(word)
        if family is not None:
            return family
    return 4


@functools.lru_cache(maxsize=4096)
def _address_family(word: str) -> int | None:
    # Cached: the same few words come back at every transition, and parsing
    # one costs ~10 us of VRRP loop time.
    try:
        return ipaddress.ip_network(word, strict=False).version
    except ValueError:
        return None


_SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}


def _scope_value(scope: str | None) -> int:
    """An address scope as ip(8) names it (or its number), as rtnetlink wants it."""
    if scope is None:
        return 0
    if scope in _SCOPES:
        return _SCOPES[scope]
    try:
        value = int(scope, 0)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        log.error("unknown address scope %r; using global", scope)
        return 0
    return value


# -- gratuitous ARP / unsolicited NA ---------------------------------------------


def garp_frame(mac: bytes, ip4: str) -> bytes:
    """A broadcast gratuitous ARP request for ``ip4`` from ``mac`` (RFC 5227 s3)."""
    ip = socket.inet_aton(ip4)
    eth = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\xff" * 6 + ip
    return eth + arp


def na_packet(mac: bytes, ip6: str) -> bytes:
    """ICMPv6 unsolicited Neighbour Advertisement (RFC 4861 s4.4), override set.

    The kernel fills in the checksum for raw ICMPv6 sockets.
    """
    target = socket.inet_pton(socket.AF_INET6, ip6)
    flags = 0x20000000  # Override; not Router, not Solicited
    opt = struct.pack("!BB", 2, 1) + mac  # Target Link-Layer Address
    return struct.pack("!BBHI", ICMPV6_NA, 0, 0, flags) + target + opt


class GratuitousSender:
    """GARP and unsolicited NA through one long-lived socket per interface.

    keepalived keeps a shared gratuitous ARP/NDISC channel for the same
    reason: closing an AF_PACKET socket waits for an RCU grace period (tens
    of milliseconds), so a socket per burst would block the event loop for
    seconds when hundreds of instances become MASTER together.
    """

    def __init__(self) -> None:
        self._arp: dict[str, socket.socket] = {}
        self._na: dict[str, tuple[socket.socket, int]] = {}

    def _arp_sock(self, dev: str) -> socket.socket:
        s = self._arp.get(dev)
        if s is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            try:
                s.bind((dev, ETH_P_ARP))
                s.setblocking(False)
            except OSError:
                s.close()
                raise
            self._arp[dev] = s
        return s

    def _na_sock(self, dev: str) -> tuple[socket.socket, int]:
        entry = self._na.get(dev)
        if entry is None:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                idx = socket.if_nametoindex(dev)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
                s.setblocking(False)
            except OSError:
                s.close()
                raise
            entry = self._na[dev] = (s, idx)
        return entry

    def send(self, dev: str, mac: bytes, addresses: Iterable[str]) -> int:
        """Send one GARP per IPv4 and one NA per IPv6 address on ``dev``."""
        sent = 0
        v4 = [a for a in addresses if ":" not in a]
        v6 = [a for a in addresses if ":" in a]
        # A socket of an interface that went away (and maybe came back with
        # another index) fails: drop it and retry once with a fresh one.
        for attempt in (0, 1):
            try:
                s = self._arp_sock(dev) if v4 else None
                for a in v4[sent:]:
                    assert s is not None
                    s.send(garp_frame(mac, a))
                    sent += 1
                break
            except OSError as exc:
                self._drop(self._arp, dev)
                if attempt:
                    log.warning("gratuitous ARP on %s failed: %s", dev, exc)
        done6 = 0
        for attempt in (0, 1):
            try:
                if v6:
                    s6, idx = self._na_sock(dev)
                    for a in v6[done6:]:
                        s6.sendto(na_packet(mac, a), (ALL_NODES6, 0, 0, idx))
                        done6 += 1
                break
            except OSError as exc:
                entry = self._na.pop(dev, None)
                if entry is not None:
                    entry[0].close()
                if attempt:
                    log.warning("unsolicited NA on %s failed: %s", dev, exc)
        return sent + done6

    def forget(self, dev: str) -> None:
        """Close the sockets of ``dev``."""
        self._drop(self._arp, dev)
        entry = self._na.pop(dev, None)
        if entry is not None:
            entry[0].close()

    @staticmethod
    def _drop(cache: dict[str, socket.socket], dev: str) -> None:
        s = cache.pop(dev, None)
        if s is not None:
            s.close()

    def close(self) -> None:
        for s in self._arp.values():
            s.close()
        for s, _ in self._na.values():
            s.close()
        self._arp.clear()
        self._na.clear()


def send_gratuitous(dev: str, mac: bytes, addresses: Iterable[str]) -> int:
    """One-shot :meth:`GratuitousSender.send` (opens and closes its sockets)."""
    sender = GratuitousSender()
    try:
        return sender.send(dev, mac, addresses)
    finally:
        sender.close()
