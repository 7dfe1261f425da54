"""A small synchronous rtnetlink client for interface addresses.

A VRRP daemon needs three requests from the kernel's routing netlink:
add an address (``RTM_NEWADDR``), delete one (``RTM_DELADDR``) and list
them (``RTM_GETADDR`` dump).  This module speaks just those over one
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
    "AddrInfo",
    "Rtnl",
    "RtnlError",
]

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
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
IFA_FLAGS = 8

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
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


def _attr(kind: int, data: bytes) -> bytes:
    length = _RTATTR.size + len(data)
    return _RTATTR.pack(length, kind) + data + b"\0" * (-length % 4)


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
    ) -> None:
        """``ip addr add``; :class:`RtnlError` ``EEXIST`` if it is there already."""
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
