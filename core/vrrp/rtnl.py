"""A small synchronous rtnetlink client for interface addresses and links.

A VRRP daemon needs few requests from the kernel's routing netlink:
add an address (``RTM_NEWADDR``), delete one (``RTM_DELADDR``) and list
them (``RTM_GETADDR`` dump); for ``use_vmac`` also list links
(``RTM_GETLINK`` dump), create, change and delete a macvlan
(``RTM_NEWLINK`` / ``RTM_DELLINK``).  This module speaks just those over one
``NETLINK_ROUTE`` socket, so a VRRP-only daemon does not import pyroute2
(about 9 MB of resident memory).  Requests to the local kernel are answered
within microseconds, so the calls simply wait for the answer.

Errors are :class:`RtnlError` (an :class:`OSError`) carrying the kernel's
errno in ``code``; callers branch on it (``EEXIST`` on add, ``EADDRNOTAVAIL``
on delete), never on message text.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "IFA_ADDRESS",
    "IFA_BROADCAST",
    "IFA_FLAGS",
    "IFA_LABEL",
    "IFA_LOCAL",
    "MACVLAN_MODE_PRIVATE",
    "AddrInfo",
    "LinkInfo",
    "Rtnl",
    "RtnlError",
]

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_BROADCAST = 4
IFA_CACHEINFO = 6
IFA_FLAGS = 8

IFF_UP = 0x1
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_AF_SPEC = 26
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_MACVLAN_MODE = 1
IFLA_INET6_ADDR_GEN_MODE = 8
IN6_ADDR_GEN_MODE_NONE = 1
NLA_F_NESTED = 0x8000
MACVLAN_MODE_PRIVATE = 1
#: ``ifa_cacheinfo.ifa_valid`` meaning "forever".
INFINITY_LIFE_TIME = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_CACHEINFO = struct.Struct("=IIII")  # preferred, valid, cstamp, tstamp
_RTATTR = struct.Struct("=HH")  # len, type
_ERR = struct.Struct("=i")
_U32 = struct.Struct("=I")
TIMEOUT = 5.0


class RtnlError(OSError):
    """The kernel refused a request; ``code`` is its errno."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}")
        self.code = code


@dataclass
class AddrInfo:
    """One address of an ``RTM_GETADDR`` dump."""

    family: int
    prefixlen: int
    flags: int
    scope: int
    index: int
    attrs: dict[int, bytes] = field(default_factory=dict)

    @property
    def address(self) -> str | None:
        """The interface's own address (``IFA_LOCAL`` for IPv4, else ``IFA_ADDRESS``)."""
        raw = self.attrs.get(IFA_LOCAL) or self.attrs.get(IFA_ADDRESS)
        if raw is None:
            return None
        return socket.inet_ntop(self.family, raw)

    @property
    def label(self) -> str | None:
        raw = self.attrs.get(IFA_LABEL)
        return raw.rstrip(b"\0").decode(errors="replace") if raw is not None else None


@dataclass
class LinkInfo:
    """One interface of an ``RTM_GETLINK`` dump."""

    index: int
    flags: int
    attrs: dict[int, bytes] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")

    @property
    def mac(self) -> bytes:
        return self.attrs.get(IFLA_ADDRESS, b"")

    @property
    def link(self) -> int:
        """The lower interface's index (a macvlan's base), 0 if none."""
        raw = self.attrs.get(IFLA_LINK)
        return _U32.unpack(raw)[0] if raw is not None and len(raw) == 4 else 0

    def _linkinfo(self) -> dict[int, bytes]:
        raw = self.attrs.get(IFLA_LINKINFO)
        return _parse_attrs(raw, 0, len(raw)) if raw else {}

    @property
    def kind(self) -> str:
        """``IFLA_INFO_KIND``: "macvlan", "veth", ... ("" for a plain device)."""
        return self._linkinfo().get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode(errors="replace")

    @property
    def macvlan_mode(self) -> int | None:
        data = self._linkinfo().get(IFLA_INFO_DATA)
        if not data:
            return None
        raw = _parse_attrs(data, 0, len(data)).get(IFLA_MACVLAN_MODE)
        return _U32.unpack(raw)[0] if raw is not None and len(raw) == 4 else None


def _attr(kind: int, data: bytes) -> bytes:
    length = _RTATTR.size + len(data)
    return _RTATTR.pack(length, kind) + data + b"\0" * (-length % 4)


def _macvlan_info(mode: int) -> bytes:
    data = _attr(IFLA_MACVLAN_MODE, _U32.pack(mode))
    return _attr(
        IFLA_LINKINFO | NLA_F_NESTED,
        _attr(IFLA_INFO_KIND, b"macvlan") + _attr(IFLA_INFO_DATA | NLA_F_NESTED, data),
    )


def _parse_attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    while off + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, off)
        if length < _RTATTR.size or off + length > end:
            break
        attrs[kind & 0x3FFF] = data[off + _RTATTR.size : off + length]
        off += (length + 3) & ~3
    return attrs


class Rtnl:
    """One ``NETLINK_ROUTE`` socket, opened on first use; thread-safe."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            try:
                s.bind((0, 0))
                s.settimeout(TIMEOUT)
            except OSError:
                s.close()
                raise
            self._sock = s
        return self._sock

    # -- requests -----------------------------------------------------------------
    def add_address(
        self,
        index: int,
        address: str,
        prefixlen: int,
        *,
        label: str | None = None,
        broadcast: str | None = None,
        scope: int = 0,
        flags: int = 0,
        preferred_lft: int | None = None,
    ) -> None:
        """``ip addr add``; :class:`RtnlError` ``EEXIST`` if it is there already.

        ``preferred_lft`` (seconds; valid stays forever): 0 makes the address
        deprecated, so the kernel never picks it as a source by itself.
        """
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        raw = socket.inet_pton(family, address)
        body = _IFADDRMSG.pack(family, prefixlen, flags & 0xFF, scope, index)
        if family == socket.AF_INET:
            body += _attr(IFA_LOCAL, raw)
        body += _attr(IFA_ADDRESS, raw)
        if broadcast is not None:
            body += _attr(IFA_BROADCAST, socket.inet_pton(family, broadcast))
        if label:
            body += _attr(IFA_LABEL, label.encode() + b"\0")
        if flags > 0xFF:
            body += _attr(IFA_FLAGS, _U32.pack(flags))
        if preferred_lft is not None:
            body += _attr(IFA_CACHEINFO, _CACHEINFO.pack(preferred_lft, INFINITY_LIFE_TIME, 0, 0))
        self._request(
            RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body, f"add {address}/{prefixlen}"
        )

    def del_address(self, index: int, address: str, prefixlen: int) -> None:
        """``ip addr del``; :class:`RtnlError` ``EADDRNOTAVAIL`` if it is not there."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        raw = socket.inet_pton(family, address)
        body = _IFADDRMSG.pack(family, prefixlen, 0, 0, index)
        if family == socket.AF_INET:
            body += _attr(IFA_LOCAL, raw)
        body += _attr(IFA_ADDRESS, raw)
        self._request(RTM_DELADDR, NLM_F_ACK, body, f"delete {address}/{prefixlen}")

    def get_addresses(self, family: int = 0, index: int | None = None) -> list[AddrInfo]:
        """Every address (of ``family``, on interface ``index`` when given)."""
        body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
        out: list[AddrInfo] = []
        for data, off, end in self._dump(RTM_GETADDR, body):
            if end - off < _IFADDRMSG.size:
                continue
            fam, plen, flags, scope, idx = _IFADDRMSG.unpack_from(data, off)
            if (family and fam != family) or (index is not None and idx != index):
                continue
            attrs = _parse_attrs(data, off + _IFADDRMSG.size, end)
            if IFA_FLAGS in attrs and len(attrs[IFA_FLAGS]) == 4:
                flags = _U32.unpack(attrs[IFA_FLAGS])[0]
            out.append(AddrInfo(fam, plen, flags, scope, idx, attrs))
        return out

    def get_links(self) -> list[LinkInfo]:
        """Every interface of the namespace (``ip -d link``)."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        out: list[LinkInfo] = []
        for data, off, end in self._dump(RTM_GETLINK, body):
            if end - off < _IFINFOMSG.size:
                continue
            _fam, _type, idx, flags, _change = _IFINFOMSG.unpack_from(data, off)
            out.append(LinkInfo(idx, flags, _parse_attrs(data, off + _IFINFOMSG.size, end)))
        return out

    def add_macvlan(self, name: str, link: int, mac: bytes, mode: int) -> None:
        """``ip link add NAME link LINK address MAC type macvlan mode MODE``
        (created down); :class:`RtnlError` ``EEXIST`` if NAME exists."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        body += _macvlan_info(mode)
        body += _attr(IFLA_LINK, _U32.pack(link))
        body += _attr(IFLA_IFNAME, name.encode() + b"\0")
        body += _attr(IFLA_ADDRESS, mac)
        self._request(
            RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body, f"create macvlan {name}"
        )

    def change_macvlan(self, index: int, mac: bytes, mode: int) -> None:
        """Set an existing macvlan's MAC address and mode."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        body += _macvlan_info(mode)
        body += _attr(IFLA_ADDRESS, mac)
        self._request(RTM_NEWLINK, NLM_F_ACK, body, f"change macvlan {index}")

    def set_link(
        self, index: int, *, up: bool | None = None, addr_gen_mode: int | None = None
    ) -> None:
        """``ip link set up|down`` and/or ``addrgenmode``.

        The kernel applies ``IFLA_AF_SPEC`` to an existing link only, and an
        interface brought up before its addr_gen_mode is set gets an EUI-64
        link-local address: set the mode first, then bring it up.
        """
        flags = change = 0
        if up is not None:
            change = IFF_UP
            flags = IFF_UP if up else 0
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)
        if addr_gen_mode is not None:
            inet6 = _attr(IFLA_INET6_ADDR_GEN_MODE, bytes([addr_gen_mode]))
            body += _attr(IFLA_AF_SPEC | NLA_F_NESTED, _attr(socket.AF_INET6 | NLA_F_NESTED, inet6))
        self._request(RTM_NEWLINK, NLM_F_ACK, body, f"set link {index}")

    def del_link(self, index: int) -> None:
        """``ip link del``; :class:`RtnlError` ``ENODEV`` if it is gone."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        self._request(RTM_DELLINK, NLM_F_ACK, body, f"delete link {index}")

    # -- the wire -----------------------------------------------------------------
    def _send(self, kind: int, flags: int, body: bytes) -> tuple[socket.socket, int]:
        s = self._socket()
        self._seq = self._seq % 0x7FFFFFFF + 1
        s.send(
            _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, self._seq, 0)
            + body
        )
        return s, self._seq

    def _request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        with self._lock:
            s, seq = self._send(kind, flags, body)
            for mtype, data, start, _end in self._answers(s, seq):
                if mtype == NLMSG_ERROR:
                    (code,) = _ERR.unpack_from(data, start)
                    if code:
                        raise RtnlError(-code, what)
                    return

    def _dump(self, kind: int, body: bytes) -> list[tuple[bytes, int, int]]:
        """The messages answering a dump, as (buffer, body offset, body end)."""
        out: list[tuple[bytes, int, int]] = []
        with self._lock:
            s, seq = self._send(kind, NLM_F_DUMP, body)
            for mtype, data, start, end in self._answers(s, seq):
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    (code,) = _ERR.unpack_from(data, start)
                    raise RtnlError(-code or errno.EIO, "dump")
                out.append((data, start, end))
        return out  # pragma: no cover - _answers only ends by raising

    def _answers(self, s: socket.socket, seq: int) -> Iterator[tuple[int, bytes, int, int]]:
        """Messages answering request ``seq``: (type, buffer, body start, end)."""
        while True:
            data = self._recv(s)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, _f, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    break
                if mseq == seq:
                    yield mtype, data, off + _NLMSGHDR.size, off + length
                off += (length + 3) & ~3

    def _recv(self, s: socket.socket) -> bytes:
        try:
            return s.recv(65536)
        except TimeoutError:
            # A lost answer leaves the socket out of step: start afresh.
            s.close()
            self._sock = None
            raise RtnlError(errno.ETIMEDOUT, "netlink answer") from None
