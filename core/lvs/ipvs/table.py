"""The IPVS table in the kernel's own terms, and the diff between two of them.

Pure: no sockets, no clock.  :func:`kernel_table` turns the desired table of
:mod:`pykeepalived.core.lvs.manager` into the values the kernel stores and reports
back (address family numbers, protocol numbers, flag bits, netmask), so that
what we want and what a dump returns compare with ``==``.  :func:`plan` then
lists the netlink operations that make the kernel match, touching nothing
that already matches: a real server whose weight changes is edited in place,
so its connections and counters live on.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field

from pykeepalived.core.config.schema import IPAddress
from pykeepalived.core.lvs.manager import Forward, IpvsService

log = logging.getLogger("pykeepalived.ipvs")

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
_AF = {4: AF_INET, 6: AF_INET6}

#: Protocol numbers as IPVS stores them (<netinet/in.h>).
PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}

# include/uapi/linux/ip_vs.h: service flags.
SVC_F_PERSISTENT = 0x0001
SVC_F_HASHED = 0x0002  # set by the kernel on every service it holds
SVC_F_ONEPACKET = 0x0004
SVC_F_SCHED1 = 0x0008
SVC_F_SCHED2 = 0x0010
SVC_F_SCHED3 = 0x0020

#: keepalived's scheduler flag words (lb_algo sh/mh options, ``flag-N``).
SCHED_FLAGS = {
    "sh-fallback": SVC_F_SCHED1,
    "sh-port": SVC_F_SCHED2,
    "mh-fallback": SVC_F_SCHED1,
    "mh-port": SVC_F_SCHED2,
    "flag-1": SVC_F_SCHED1,
    "flag-2": SVC_F_SCHED2,
    "flag-3": SVC_F_SCHED3,
}


class FwdMethod(enum.IntEnum):
    """IP_VS_CONN_F_* forwarding methods (the low bits of a dest's conn_flags)."""

    MASQ = 0
    LOCALNODE = 1
    TUNNEL = 2
    DROUTE = 3
    BYPASS = 4


FORWARD = {Forward.NAT: FwdMethod.MASQ, Forward.DR: FwdMethod.DROUTE, Forward.TUN: FwdMethod.TUNNEL}


@dataclass(frozen=True, order=True)
class ServiceKey:
    """What identifies a kernel virtual service: ``af/protocol/addr/port`` or ``af/fwmark``.

    For a fwmark service the kernel neither keeps nor reports protocol,
    address or port, so they are 0/None here.
    """

    af: int
    protocol: int = 0
    addr: IPAddress | None = None
    port: int = 0
    fwmark: int = 0

    def __str__(self) -> str:
        # keepalived's way of naming a service: [192.0.2.1]:tcp:80, FWM 1
        if self.fwmark:
            return f"FWM {self.fwmark}" + (" (IPv6)" if self.af == AF_INET6 else "")
        proto = PROTOCOL_NAMES.get(self.protocol, str(self.protocol)).lower()
        return f"[{self.addr}]:{proto}:{self.port}"


@dataclass(frozen=True)
class ServiceAttrs:
    """What ``IPVS_CMD_SET_SERVICE`` can change on a live service."""

    scheduler: str
    flags: int  # SVC_F_*, without SVC_F_HASHED
    timeout: int  # persistence timeout, seconds
    netmask: int  # IPv4: the mask as a number (0xffffffff); IPv6: prefix length
    pe_name: str | None = None


@dataclass(frozen=True, order=True)
class DestKey:
    """What identifies a real server within a service."""

    af: int
    addr: IPAddress
    port: int

    def __str__(self) -> str:
        return f"[{self.addr}]:{self.port}"


@dataclass(frozen=True)
class DestAttrs:
    """What ``IPVS_CMD_SET_DEST`` can change on a live real server."""

    fwd: FwdMethod
    weight: int
    u_threshold: int = 0
    l_threshold: int = 0


@dataclass(frozen=True)
class DestCounters:
    """Read-only state the kernel reports for a real server (never compared)."""

    active_conns: int = 0
    inactive_conns: int = 0
    persistent_conns: int = 0
    conns: int = 0  # connections scheduled to it since it was added


@dataclass
class KernelService:
    """One service with its real servers, as the kernel holds it (or should)."""

    key: ServiceKey
    attrs: ServiceAttrs
    dests: dict[DestKey, DestAttrs] = field(default_factory=dict)
    counters: dict[DestKey, DestCounters] = field(default_factory=dict, compare=False)


Table = dict[ServiceKey, KernelService]


# -- desired table -> kernel terms ------------------------------------------------------------


class TableError(ValueError):
    """A desired service the kernel cannot hold as given."""


def _netmask(svc: IpvsService, af: int) -> int:
    """persistence_granularity in the kernel's terms (ip_vs_ctl.c): IPv4 a
    mask, IPv6 a prefix length 1..128; keepalived's defaults are /32, /128."""
    text = (svc.persistence_granularity or "").strip().lstrip("/")
    if af == AF_INET6:
        if not text:
            return 128
        if not text.isdigit() or not 1 <= int(text) <= 128:
            raise TableError(f"{svc.label}: invalid IPv6 persistence_granularity {text!r}")
        return int(text)
    if not text:
        return 0xFFFFFFFF
    try:
        if text.isdigit():
            return int(ipaddress.IPv4Network(f"0.0.0.0/{text}").netmask)
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise TableError(f"{svc.label}: invalid persistence_granularity {text!r}") from None


def service_key(svc: IpvsService) -> ServiceKey:
    af = _AF.get(svc.family)
    if af is None:
        raise TableError(f"{svc.label}: unknown address family {svc.family}")
    if svc.fwmark is not None:
        if not 1 <= svc.fwmark <= 0xFFFFFFFF:
            raise TableError(f"{svc.label}: fwmark must be 1..4294967295")
        return ServiceKey(af, fwmark=svc.fwmark)
    if svc.address is None or svc.port is None:
        raise TableError(f"{svc.label}: a service needs an address and port or a fwmark")
    if _AF[svc.address.version] != af:
        raise TableError(f"{svc.label}: address is not IPv{svc.family}")
    protocol = PROTOCOLS.get(svc.protocol.upper())
    if protocol is None:
        raise TableError(f"{svc.label}: unknown protocol {svc.protocol!r}")
    return ServiceKey(af, protocol, svc.address, svc.port)


def service_attrs(svc: IpvsService, af: int) -> ServiceAttrs:
    flags = 0
    for word in svc.flags:
        bit = SCHED_FLAGS.get(word)
        if bit is None:
            raise TableError(f"{svc.label}: unknown scheduler flag {word!r}")
        flags |= bit
    if svc.ops:
        flags |= SVC_F_ONEPACKET
    timeout = 0
    # keepalived (ipvswrapper.c): persistent iff persistence_timeout is set,
    # and the granularity only matters then; otherwise the full mask.
    netmask = 128 if af == AF_INET6 else 0xFFFFFFFF
    if svc.persistence_timeout:
        flags |= SVC_F_PERSISTENT
        timeout = svc.persistence_timeout
        netmask = _netmask(svc, af)
    pe_name = getattr(svc, "persistence_engine", None) or None
    return ServiceAttrs(svc.scheduler, flags, timeout, netmask, pe_name)


def kernel_table(services: Iterable[IpvsService]) -> Table:
    """The desired table in kernel terms.  A service the kernel could not
    hold is logged and left out; a duplicate service or real server keeps
    its first occurrence, as keepalived does."""
    table: Table = {}
    for svc in services:
        try:
            key = service_key(svc)
            attrs = service_attrs(svc, key.af)
        except TableError as exc:
            log.error("IPVS: %s - ignoring it", exc)
            continue
        if key in table:
            log.warning("IPVS: service %s listed twice - keeping the first", key)
            continue
        kept = KernelService(key, attrs)
        for dest in svc.destinations:
            dkey = DestKey(_AF[dest.address.version], dest.address, dest.port)
            if dkey in kept.dests:
                log.warning("IPVS: %s: real server %s listed twice - keeping the first", key, dkey)
                continue
            kept.dests[dkey] = DestAttrs(
                FORWARD[Forward(dest.forward)], dest.weight, dest.uthreshold, dest.lthreshold
            )
        table[key] = kept
    return table


# -- the diff -----------------------------------------------------------------------------------


class OpKind(enum.Enum):
    ADD_SERVICE = "add service"
    EDIT_SERVICE = "edit service"
    DEL_SERVICE = "delete service"
    ADD_DEST = "add real server"
    EDIT_DEST = "edit real server"
    DEL_DEST = "delete real server"


@dataclass(frozen=True)
class Op:
    """One netlink request: the service, and for dest operations the dest."""

    kind: OpKind
    service: ServiceKey
    attrs: ServiceAttrs | None = None
    dest: DestKey | None = None
    dest_attrs: DestAttrs | None = None

    def __str__(self) -> str:
        if self.dest is None:
            return f"{self.kind.value} {self.service}"
        return f"{self.kind.value} {self.dest} of {self.service}"


def _same_dest(want: DestAttrs, have: DestAttrs) -> bool:
    # Old kernels reported NAT to a local address as LOCALNODE; that is the
    # kernel's doing, not a difference worth an edit.
    if have.fwd is FwdMethod.LOCALNODE and want.fwd is FwdMethod.MASQ:
        have = DestAttrs(FwdMethod.MASQ, have.weight, have.u_threshold, have.l_threshold)
    return want == have


def plan(
    desired: Table, current: Mapping[ServiceKey, KernelService], owned: Set[ServiceKey]
) -> list[Op]:
    """The operations that make ``current`` match ``desired``.

    ``owned`` are the services we created (or took over because they were
    desired): those absent from ``desired`` are deleted, with their real
    servers (the kernel drops those with the service).  Services we do not
    own and do not want are left alone.  A desired service that exists is
    taken over: edited in place if its attributes differ, and its real
    servers made exactly the desired ones.  Within a service, new real
    servers are added before stale ones go, so it never sits empty in
    between.
    """
    ops: list[Op] = []
    for key in sorted(owned - desired.keys(), key=_sort_key):
        if key in current:
            ops.append(Op(OpKind.DEL_SERVICE, key))
    for key, want in desired.items():
        have = current.get(key)
        if have is None:
            ops.append(Op(OpKind.ADD_SERVICE, key, want.attrs))
            ops.extend(
                Op(OpKind.ADD_DEST, key, dest=d, dest_attrs=a) for d, a in want.dests.items()
            )
            continue
        if have.attrs != want.attrs:
            ops.append(Op(OpKind.EDIT_SERVICE, key, want.attrs))
        for dkey, dattrs in want.dests.items():
            old = have.dests.get(dkey)
            if old is None:
                ops.append(Op(OpKind.ADD_DEST, key, dest=dkey, dest_attrs=dattrs))
            elif not _same_dest(dattrs, old):
                ops.append(Op(OpKind.EDIT_DEST, key, dest=dkey, dest_attrs=dattrs))
        for dkey in sorted(have.dests.keys() - want.dests.keys(), key=_sort_key):
            ops.append(Op(OpKind.DEL_DEST, key, dest=dkey))
    return ops


def _sort_key(key: ServiceKey | DestKey) -> tuple[object, ...]:
    # Deterministic order for logs and tests; addresses of both families mix.
    if isinstance(key, DestKey):
        return (key.af, int(key.addr), key.port)
    return (key.af, key.fwmark, key.protocol, int(key.addr) if key.addr else 0, key.port)
