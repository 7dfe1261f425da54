"""A small generic-netlink IPVS client on pyroute2's asyncio socket.

pyroute2 ships IPVS message classes and an ``IPVS`` helper, but they do not
fit a diffing client: the helper's ``"update"`` maps to IPVS_CMD_DEL_SERVICE,
the netmask is always encoded as an IPv4 address (the kernel wants a prefix
length for IPv6 services), and addresses come back padded to 16 bytes.  So
this module defines its own message layout (include/uapi/linux/ip_vs.h) and
encodes keys and attributes from :mod:`.table` itself.

All requests go through :class:`pyroute2.netlink.generic.AsyncGenericNetlinkSocket`
on the caller's event loop: nothing blocks (a netlink request to IPVS is
answered by the kernel synchronously within the send, so each await is
short).  Errors are :class:`pyroute2.netlink.exceptions.NetlinkError` with
``.code`` an errno; a request the kernel leaves unanswered for
REQUEST_TIMEOUT raises TimeoutError (never seen; a bound all the same).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import struct
import sys
from types import TracebackType
from typing import Any

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    genlmsg,
    nla,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket

from pykeepalived.core.config.schema import IPAddress
from pykeepalived.core.lvs.ipvs.table import (
    AF_INET6,
    SVC_F_HASHED,
    DestAttrs,
    DestCounters,
    DestKey,
    FwdMethod,
    KernelService,
    ServiceAttrs,
    ServiceKey,
    Table,
)

REQUEST_TIMEOUT = 5.0

GENL_NAME = "IPVS"
GENL_VERSION = 1

CMD_NEW_SERVICE = 1
CMD_SET_SERVICE = 2
CMD_DEL_SERVICE = 3
CMD_GET_SERVICE = 4
CMD_NEW_DEST = 5
CMD_SET_DEST = 6
CMD_DEL_DEST = 7
CMD_GET_DEST = 8
CMD_NEW_DAEMON = 9
CMD_DEL_DAEMON = 10
CMD_GET_DAEMON = 11
CMD_FLUSH = 17

#: IPVS_DAEMON_ATTR_STATE values (IP_VS_STATE_MASTER / IP_VS_STATE_BACKUP).
DAEMON_MASTER = 1
DAEMON_BACKUP = 2

CMD_NAMES = {
    CMD_NEW_SERVICE: "IPVS_CMD_NEW_SERVICE",
    CMD_SET_SERVICE: "IPVS_CMD_SET_SERVICE",
    CMD_DEL_SERVICE: "IPVS_CMD_DEL_SERVICE",
    CMD_GET_SERVICE: "IPVS_CMD_GET_SERVICE",
    CMD_NEW_DEST: "IPVS_CMD_NEW_DEST",
    CMD_SET_DEST: "IPVS_CMD_SET_DEST",
    CMD_DEL_DEST: "IPVS_CMD_DEL_DEST",
    CMD_GET_DEST: "IPVS_CMD_GET_DEST",
    CMD_NEW_DAEMON: "IPVS_CMD_NEW_DAEMON",
    CMD_DEL_DAEMON: "IPVS_CMD_DEL_DAEMON",
    CMD_GET_DAEMON: "IPVS_CMD_GET_DAEMON",
    CMD_FLUSH: "IPVS_CMD_FLUSH",
}


class _Stats(nla):  # type: ignore[misc]
    # Counters are 32 bits in IPVS_*_ATTR_STATS; only the first one is read.
    nla_map = (
        ("IPVS_STATS_ATTR_UNSPEC", "none"),
        ("IPVS_STATS_ATTR_CONNS", "uint32"),
    )


class IpvsMsg(genlmsg):  # type: ignore[misc]
    """IPVS generic netlink message; addresses and netmask stay raw bytes."""

    prefix = "IPVS_CMD_ATTR_"
    nla_map = (
        ("IPVS_CMD_ATTR_UNSPEC", "none"),
        ("IPVS_CMD_ATTR_SERVICE", "service"),
        ("IPVS_CMD_ATTR_DEST", "dest"),
        ("IPVS_CMD_ATTR_DAEMON", "daemon"),
    )

    class daemon(nla):  # type: ignore[misc]
        # ip_vs_ctl.c: the port is a host-order u16, the IPv4 group a be32
        # (kept as raw bytes), the IPv6 group 16 bytes.
        prefix = "IPVS_DAEMON_ATTR_"
        nla_map = (
            ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
            ("IPVS_DAEMON_ATTR_STATE", "uint32"),
            ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
            ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
            ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP", "cdata"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "cdata"),
            ("IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
        )

    class service(nla):  # type: ignore[misc]  # pyroute2 finds nla types by name
        prefix = "IPVS_SVC_ATTR_"
        nla_map = (
            ("IPVS_SVC_ATTR_UNSPEC", "none"),
            ("IPVS_SVC_ATTR_AF", "uint16"),
            ("IPVS_SVC_ATTR_PROTOCOL", "uint16"),
            ("IPVS_SVC_ATTR_ADDR", "cdata"),
            ("IPVS_SVC_ATTR_PORT", "be16"),
            ("IPVS_SVC_ATTR_FWMARK", "uint32"),
            ("IPVS_SVC_ATTR_SCHED_NAME", "asciiz"),
            ("IPVS_SVC_ATTR_FLAGS", "flags"),
            ("IPVS_SVC_ATTR_TIMEOUT", "uint32"),
            ("IPVS_SVC_ATTR_NETMASK", "cdata"),
            ("IPVS_SVC_ATTR_STATS", "none"),
            ("IPVS_SVC_ATTR_PE_NAME", "asciiz"),
        )

        class flags(nla):  # type: ignore[misc]
            fields = (("flags", "I"), ("mask", "I"))

    class dest(nla):  # type: ignore[misc]
        prefix = "IPVS_DEST_ATTR_"
        nla_map = (
            ("IPVS_DEST_ATTR_UNSPEC", "none"),
            ("IPVS_DEST_ATTR_ADDR", "cdata"),
            ("IPVS_DEST_ATTR_PORT", "be16"),
            ("IPVS_DEST_ATTR_FWD_METHOD", "uint32"),
            ("IPVS_DEST_ATTR_WEIGHT", "uint32"),
            ("IPVS_DEST_ATTR_U_THRESH", "uint32"),
            ("IPVS_DEST_ATTR_L_THRESH", "uint32"),
            ("IPVS_DEST_ATTR_ACTIVE_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_INACT_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_PERSIST_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_STATS", "stats"),
            ("IPVS_DEST_ATTR_ADDR_FAMILY", "uint16"),
        )

        stats = _Stats


class IpvsUnavailable(Exception):
    """The kernel has no IPVS (ip_vs not loaded, or not built)."""


# -- encoding ---------------------------------------------------------------------------------


def _addr_bytes(addr: IPAddress) -> bytes:
    return addr.packed


def _addr_from(af: int, raw: bytes) -> IPAddress:
    # The kernel reports union nf_inet_addr: 16 bytes whatever the family.
    if af == AF_INET6:
        return ipaddress.IPv6Address(raw[:16])
    return ipaddress.IPv4Address(raw[:4])


def _netmask_bytes(af: int, netmask: int) -> bytes:
    # ip_vs_ctl.c reads IPVS_SVC_ATTR_NETMASK with nla_get_be32: an IPv4 mask
    # in network order, but an IPv6 prefix length as a plain u32.
    if af == AF_INET6:
        return struct.pack("=I", netmask)
    return netmask.to_bytes(4, "big")


def _netmask_from(af: int, raw: bytes) -> int:
    if af == AF_INET6:
        return int.from_bytes(raw[:4], sys.byteorder)
    return int.from_bytes(raw[:4], "big")


def _service_key_attrs(key: ServiceKey) -> list[tuple[str, Any]]:
    attrs: list[tuple[str, Any]] = [("IPVS_SVC_ATTR_AF", key.af)]
    if key.fwmark:
        attrs.append(("IPVS_SVC_ATTR_FWMARK", key.fwmark))
    else:
        assert key.addr is not None
        attrs += [
            ("IPVS_SVC_ATTR_PROTOCOL", key.protocol),
            ("IPVS_SVC_ATTR_ADDR", _addr_bytes(key.addr)),
            ("IPVS_SVC_ATTR_PORT", key.port),
        ]
    return attrs


def _service_nla(key: ServiceKey, attrs: ServiceAttrs | None) -> dict[str, Any]:
    nlas = _service_key_attrs(key)
    if attrs is not None:
        nlas += [
            ("IPVS_SVC_ATTR_SCHED_NAME", attrs.scheduler),
            ("IPVS_SVC_ATTR_FLAGS", {"flags": attrs.flags, "mask": 0xFFFFFFFF}),
            ("IPVS_SVC_ATTR_TIMEOUT", attrs.timeout),
            ("IPVS_SVC_ATTR_NETMASK", _netmask_bytes(key.af, attrs.netmask)),
        ]
        if attrs.pe_name:
            nlas.append(("IPVS_SVC_ATTR_PE_NAME", attrs.pe_name))
    return {"attrs": nlas}


def _dest_nla(dest: DestKey, attrs: DestAttrs | None) -> dict[str, Any]:
    nlas: list[tuple[str, Any]] = [
        ("IPVS_DEST_ATTR_ADDR", _addr_bytes(dest.addr)),
        ("IPVS_DEST_ATTR_PORT", dest.port),
        ("IPVS_DEST_ATTR_ADDR_FAMILY", dest.af),
    ]
    if attrs is not None:
        nlas += [
            ("IPVS_DEST_ATTR_FWD_METHOD", int(attrs.fwd)),
            ("IPVS_DEST_ATTR_WEIGHT", attrs.weight),
            ("IPVS_DEST_ATTR_U_THRESH", attrs.u_threshold),
            ("IPVS_DEST_ATTR_L_THRESH", attrs.l_threshold),
        ]
    return {"attrs": nlas}


def _msg(cmd: int, attrs: list[tuple[str, Any]]) -> Any:
    msg = IpvsMsg()
    msg["cmd"] = cmd
    msg["version"] = GENL_VERSION
    msg["attrs"] = attrs
    return msg


# -- decoding ---------------------------------------------------------------------------------


def parse_service(svc: Any) -> tuple[ServiceKey, ServiceAttrs]:
    af = svc.get_attr("IPVS_SVC_ATTR_AF")
    fwmark = svc.get_attr("IPVS_SVC_ATTR_FWMARK") or 0
    if fwmark:
        key = ServiceKey(af, fwmark=fwmark)
    else:
        key = ServiceKey(
            af,
            svc.get_attr("IPVS_SVC_ATTR_PROTOCOL"),
            _addr_from(af, svc.get_attr("IPVS_SVC_ATTR_ADDR")),
            svc.get_attr("IPVS_SVC_ATTR_PORT"),
        )
    flags = svc.get_attr("IPVS_SVC_ATTR_FLAGS")
    attrs = ServiceAttrs(
        svc.get_attr("IPVS_SVC_ATTR_SCHED_NAME") or "",
        (flags["flags"] if flags is not None else 0) & ~SVC_F_HASHED,
        svc.get_attr("IPVS_SVC_ATTR_TIMEOUT") or 0,
        _netmask_from(af, svc.get_attr("IPVS_SVC_ATTR_NETMASK") or b"\xff\xff\xff\xff"),
        svc.get_attr("IPVS_SVC_ATTR_PE_NAME") or None,
    )
    return key, attrs


def parse_dest(dest: Any, service_af: int) -> tuple[DestKey, DestAttrs, DestCounters]:
    # IPVS_DEST_ATTR_ADDR_FAMILY exists since Linux 4.14; before that a real
    # server always had its service's family.
    af = dest.get_attr("IPVS_DEST_ATTR_ADDR_FAMILY") or service_af
    key = DestKey(
        af,
        _addr_from(af, dest.get_attr("IPVS_DEST_ATTR_ADDR")),
        dest.get_attr("IPVS_DEST_ATTR_PORT"),
    )
    attrs = DestAttrs(
        FwdMethod(dest.get_attr("IPVS_DEST_ATTR_FWD_METHOD") & 0x7),
        dest.get_attr("IPVS_DEST_ATTR_WEIGHT"),
        dest.get_attr("IPVS_DEST_ATTR_U_THRESH") or 0,
        dest.get_attr("IPVS_DEST_ATTR_L_THRESH") or 0,
    )
    stats = dest.get_attr("IPVS_DEST_ATTR_STATS")
    counters = DestCounters(
        dest.get_attr("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0,
        dest.get_attr("IPVS_DEST_ATTR_INACT_CONNS") or 0,
        dest.get_attr("IPVS_DEST_ATTR_PERSIST_CONNS") or 0,
        (stats.get_attr("IPVS_STATS_ATTR_CONNS") or 0) if stats is not None else 0,
    )
    return key, attrs, counters


# -- the client -------------------------------------------------------------------------------


class IpvsNetlink:
    """One IPVS generic netlink socket; use as ``async with IpvsNetlink() as nl``.

    Raises :class:`IpvsUnavailable` on entry when the kernel has no IPVS
    family (the only way to tell: CTRL_CMD_GETFAMILY answers ENOENT).
    """

    def __init__(self) -> None:
        self._sock: Any = None

    async def __aenter__(self) -> IpvsNetlink:
        sock = AsyncGenericNetlinkSocket()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await sock.bind(GENL_NAME, IpvsMsg)
        except NetlinkError as exc:
            sock.close()
            if exc.code == errno.ENOENT:
                raise IpvsUnavailable("no IPVS generic netlink family (ip_vs not loaded)") from None
            raise
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _request(self, cmd: int, attrs: list[tuple[str, Any]], flags: int = 0) -> None:
        msg = _msg(cmd, attrs)
        async with asyncio.timeout(REQUEST_TIMEOUT):
            response = await self._sock.nlm_request(
                msg, msg_type=self._sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK | flags
            )
            async for _ in response:
                pass

    async def _dump(self, cmd: int, attrs: list[tuple[str, Any]]) -> list[Any]:
        msg = _msg(cmd, attrs)
        async with asyncio.timeout(REQUEST_TIMEOUT):
            response = await self._sock.nlm_request(
                msg, msg_type=self._sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_DUMP
            )
            return [m async for m in response]

    # -- reading --

    async def services(self) -> list[tuple[ServiceKey, ServiceAttrs]]:
        out = []
        for msg in await self._dump(CMD_GET_SERVICE, []):
            svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
            if svc is not None:
                out.append(parse_service(svc))
        return out

    async def dests(self, key: ServiceKey) -> list[tuple[DestKey, DestAttrs, DestCounters]]:
        attrs = [("IPVS_CMD_ATTR_SERVICE", _service_nla(key, None))]
        out = []
        for msg in await self._dump(CMD_GET_DEST, attrs):
            dest = msg.get_attr("IPVS_CMD_ATTR_DEST")
            if dest is not None:
                out.append(parse_dest(dest, key.af))
        return out

    async def table(self, keys: set[ServiceKey] | None = None) -> Table:
        """The kernel's services, with real servers for those in ``keys`` (all if None)."""
        table: Table = {}
        for key, attrs in await self.services():
            svc = table[key] = KernelService(key, attrs)
            if keys is None or key in keys:
                for dkey, dattrs, counters in await self.dests(key):
                    svc.dests[dkey] = dattrs
                    svc.counters[dkey] = counters
        return table

    # -- writing --

    async def add_service(self, key: ServiceKey, attrs: ServiceAttrs) -> None:
        nlas = [("IPVS_CMD_ATTR_SERVICE", _service_nla(key, attrs))]
        await self._request(CMD_NEW_SERVICE, nlas, NLM_F_CREATE | NLM_F_EXCL)

    async def edit_service(self, key: ServiceKey, attrs: ServiceAttrs) -> None:
        await self._request(CMD_SET_SERVICE, [("IPVS_CMD_ATTR_SERVICE", _service_nla(key, attrs))])

    async def del_service(self, key: ServiceKey) -> None:
        await self._request(CMD_DEL_SERVICE, [("IPVS_CMD_ATTR_SERVICE", _service_nla(key, None))])

    async def add_dest(self, key: ServiceKey, dest: DestKey, attrs: DestAttrs) -> None:
        nlas = [
            ("IPVS_CMD_ATTR_SERVICE", _service_nla(key, None)),
            ("IPVS_CMD_ATTR_DEST", _dest_nla(dest, attrs)),
        ]
        await self._request(CMD_NEW_DEST, nlas, NLM_F_CREATE | NLM_F_EXCL)

    async def edit_dest(self, key: ServiceKey, dest: DestKey, attrs: DestAttrs) -> None:
        nlas = [
            ("IPVS_CMD_ATTR_SERVICE", _service_nla(key, None)),
            ("IPVS_CMD_ATTR_DEST", _dest_nla(dest, attrs)),
        ]
        await self._request(CMD_SET_DEST, nlas)

    async def del_dest(self, key: ServiceKey, dest: DestKey) -> None:
        nlas = [
            ("IPVS_CMD_ATTR_SERVICE", _service_nla(key, None)),
            ("IPVS_CMD_ATTR_DEST", _dest_nla(dest, None)),
        ]
        await self._request(CMD_DEL_DEST, nlas)

    # -- the connection sync daemon (core/lvs/syncd.py) --

    async def start_daemon(self, state: int, attrs: list[tuple[str, Any]]) -> None:
        """IPVS_CMD_NEW_DAEMON: ``state`` DAEMON_MASTER or DAEMON_BACKUP,
        ``attrs`` the other IPVS_DAEMON_ATTR_* (MCAST_IFN and SYNC_ID are
        required by the kernel).  EEXIST: that daemon already runs."""
        nla = {"attrs": [("IPVS_DAEMON_ATTR_STATE", state), *attrs]}
        await self._request(CMD_NEW_DAEMON, [("IPVS_CMD_ATTR_DAEMON", nla)])

    async def stop_daemon(self, state: int) -> None:
        """IPVS_CMD_DEL_DAEMON; ESRCH: that daemon was not running."""
        nla = {"attrs": [("IPVS_DAEMON_ATTR_STATE", state)]}
        await self._request(CMD_DEL_DAEMON, [("IPVS_CMD_ATTR_DAEMON", nla)])

    async def daemons(self) -> list[dict[str, Any]]:
        """The running sync daemons, as {IPVS_DAEMON_ATTR_* name: value}."""
        out = []
        for msg in await self._dump(CMD_GET_DAEMON, []):
            daemon = msg.get_attr("IPVS_CMD_ATTR_DAEMON")
            if daemon is not None:
                out.append({name: value for name, value in daemon["attrs"]})
        return out

    async def flush(self) -> None:
        """IPVS_CMD_FLUSH: every service of this network namespace goes."""
        await self._request(CMD_FLUSH, [])
