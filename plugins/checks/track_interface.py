"""``track_interface``: link up/down from rtnetlink events, not polling.

``track_interface { IF [weight N [reverse]] }`` is core grammar (family
``interface``); this plugin registers the tracker class and the top-level
block keepalived also accepts::

    interface_up_down_delays {
        IF DOWN_DELAY [UP_DELAY]   # seconds, 0..255; UP_DELAY defaults to 0
    }

(keepalived.conf(5) says a missing up delay equals the down delay; keepalived
2.x's parser sets it to 0, which is what we do.)  The result lands in
``Config.ext["interface_up_down_delays"]`` as ``{ifname: (down, up)}``.

An interface is up when it is IFF_UP and IFF_RUNNING (carrier), as
keepalived's IF_FLAGS_UP; a missing interface is down.  The tracker opens a
NETLINK_ROUTE socket in the network namespace the daemon runs in,
subscribed to RTMGRP_LINK, dumps the links once, then follows RTM_NEWLINK /
RTM_DELLINK; on ENOBUFS (missed events) it dumps again.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

from pykeepalived.api import (
    BlockSpec,
    Context,
    Grammar,
    InterfaceTrackConf,
    Invalid,
    ItemSpec,
    Kw,
    Node,
    Tracker,
    TrackStatus,
    WatchTracker,
    hookimpl,
    parse_block,
    parse_float,
)

log = logging.getLogger("pykeepalived.vrrp.netlink")

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFLA_IFNAME = 3
IFF_UP = 0x1
IFF_RUNNING = 0x40
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_links(data: bytes) -> Iterator[tuple[int, str, int]]:
    """(message type, ifname, flags) for each link message; type NLMSG_DONE at dump end."""
    i = 0
    while i + _NLMSG.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSG.unpack_from(data, i)
        if length < _NLMSG.size:
            break
        if mtype == NLMSG_DONE:
            yield NLMSG_DONE, "", 0
        elif mtype == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, i + _NLMSG.size)
            if code:
                raise OSError(-code, f"rtnetlink: {os.strerror(-code)}")
        elif mtype in (RTM_NEWLINK, RTM_DELLINK):
            _family, _type, _index, flags, _change = _IFINFO.unpack_from(data, i + _NLMSG.size)
            j = i + _NLMSG.size + _IFINFO.size
            end = i + length
            name = ""
            while j + _RTA.size <= end:
                rlen, rtype = _RTA.unpack_from(data, j)
                if rlen < _RTA.size:
                    break
                if rtype == IFLA_IFNAME:
                    name = data[j + _RTA.size : j + rlen].split(b"\0", 1)[0].decode()
                    break
                j += _align(rlen)
            yield mtype, name, flags
        i += _align(length)


def link_up(flags: int) -> bool:
    return flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING


class LinkMonitor:
    """A NETLINK_ROUTE socket subscribed to link events (one per tracker)."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, RTMGRP_LINK))
        self.sock.setblocking(False)
        self._seq = 0

    def request_dump(self) -> None:
        self._seq += 1
        body = struct.pack("=Bxxx", socket.AF_UNSPEC) + b"\0" * 12  # struct ifinfomsg
        msg = _NLMSG.pack(
            _NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0
        )
        self.sock.send(msg + body)

    async def recv(self) -> bytes:
        return await asyncio.get_running_loop().sock_recv(self.sock, 1 << 16)

    def close(self) -> None:
        self.sock.close()


class InterfaceTracker(WatchTracker):
    """Up while the interface is IFF_UP|IFF_RUNNING, with optional debounce delays."""

    family = "interface"

    def __init__(self, name: str, conf: Any, on_change: Callable[[Tracker], None]) -> None:
        if conf is None:
            conf = InterfaceTrackConf(name)
        super().__init__(name, conf, on_change)
        self.conf: InterfaceTrackConf = conf
        self._link_up: bool | None = None
        self._debounce: asyncio.TimerHandle | None = None

    def initial_up(self) -> bool:
        return False

    def _observe(self, up: bool) -> None:
        if up == self._link_up:
            return
        first = self._link_up is None
        self._link_up = up
        if not first:
            log.info("Netlink reports %s %s", self.name, "up" if up else "down")
        if self._debounce is not None:
            self._debounce.cancel()
            self._debounce = None
        delay = self.conf.up_delay if up else self.conf.down_delay
        if first or delay <= 0 or self.pending:
            self._apply(up)
        elif up != self.status.up:
            self._debounce = asyncio.get_running_loop().call_later(delay, self._apply, up)

    def _apply(self, up: bool) -> None:
        self._debounce = None
        self.settle(TrackStatus(up=up, reason=f"interface {self.name} {'up' if up else 'down'}"))

    async def run(self) -> None:
        mon = LinkMonitor()
        try:
            mon.request_dump()
            dumping = True
            seen = False
            while True:
                try:
                    data = await mon.recv()
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    log.info("Netlink: receive buffer overrun; re-reading links")
                    mon.request_dump()
                    dumping, seen = True, False
                    continue
                for mtype, name, flags in parse_links(data):
                    if mtype == NLMSG_DONE:
                        if dumping and not seen:
                            self._observe(False)  # not there: down
                        dumping = False
                    elif name == self.name:
                        seen = True
                        self._observe(mtype == RTM_NEWLINK and link_up(flags))
        finally:
            if self._debounce is not None:
                self._debounce.cancel()
            mon.close()


def _delay_item(node: Node, ctx: Context) -> tuple[str, float, float]:
    if not node.args:
        raise Invalid(f"No timeouts specified for {node.keyword} up/down delays")
    if len(node.args) > 2:
        ctx.warn(node.place, f"Too many parameters for {node.keyword} up/down delays")
    down = parse_float(node.args[0], 0, 255)
    up = parse_float(node.args[1], 0, 255) if len(node.args) > 1 else 0.0
    return node.keyword, down, up


def _delays(spec: BlockSpec) -> Callable[[Node, Context], dict[str, tuple[float, float]]]:
    def conv(node: Node, ctx: Context) -> dict[str, tuple[float, float]]:
        items = parse_block(node.children or [], spec, ctx).get("items", [])
        return {name: (down, up) for name, down, up in items}

    return conv


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    spec = BlockSpec("interface_up_down_delays", items=ItemSpec(_delay_item, None))
    grammar.add(
        "top",
        Kw("interface_up_down_delays", _delays(spec), block=spec, needs_block=True),
    )


@hookimpl
def pykeepalived_register_trackers() -> dict[str, type[Tracker]]:
    return {"interface": InterfaceTracker}
