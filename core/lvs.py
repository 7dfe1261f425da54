"""Virtual servers: real-server health, weights, quorum, and the IPVS table.

The manager here is pure bookkeeping plus one push: it receives checker
results, decides which real servers are in service with which weight, and
hands the whole *desired* table to an IPVS backend.  The backend (see
:mod:`pykeepalived.core.ipvs`) makes the kernel match it.

Desired-table contract (stable; the IPVS backend is written against it):

* :class:`IpvsService` is one kernel virtual service (keyed by
  :attr:`IpvsService.key`), :class:`IpvsDest` one real server of it (keyed by
  :attr:`IpvsDest.key`).
* ``backend.apply(services)`` receives the complete list of services that
  pykeepalived wants; services it does not list and that it created before
  must be removed, destinations likewise.  It may return an awaitable (the
  manager awaits it).  It is called after every change, and with ``[]`` on
  shutdown (keepalived removes its virtual servers when it stops).
* A destination with ``weight == 0`` stays in the table (keepalived's
  inhibit_on_failure, and a real server configured with weight 0).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Protocol

from .config.schema import IPAddress


class Forward(enum.StrEnum):
    """IPVS packet-forwarding method (keepalived's lb_kind / lvs_method)."""

    NAT = "NAT"  # masquerading
    DR = "DR"  # direct routing (gatewaying)
    TUN = "TUN"  # IP-in-IP tunnelling


@dataclass
class IpvsDest:
    """One real server of a virtual service."""

    address: IPAddress
    port: int
    weight: int = 1
    forward: Forward = Forward.NAT
    #: Upper/lower connection thresholds; 0 means no limit (ipvsadm -x / -y).
    uthreshold: int = 0
    lthreshold: int = 0

    @property
    def key(self) -> tuple[IPAddress, int]:
        return (self.address, self.port)

    @property
    def family(self) -> int:
        return self.address.version


@dataclass
class IpvsService:
    """One IPVS virtual service: ``address:port/protocol`` or ``fwmark``.

    ``address``/``port`` are None for a fwmark service; ``family`` (4 or 6)
    then tells the kernel table to use (keepalived takes it from the real
    servers).  ``flags`` are scheduler flags in keepalived's words
    (``sh-port``, ``sh-fallback``, ``mh-port``, ``mh-fallback``, ``flag-1``..).
    ``persistence_timeout`` None: not persistent.  ``persistence_granularity``
    is the netmask (IPv4 dotted or IPv6 prefix length as text) or None.
    """

    protocol: str  # "TCP", "UDP" or "SCTP"
    address: IPAddress | None
    port: int | None
    fwmark: int | None = None
    scheduler: str = "wlc"
    flags: list[str] = field(default_factory=list)
    persistence_timeout: int | None = None
    persistence_granularity: str | None = None
    ops: bool = False
    destinations: list[IpvsDest] = field(default_factory=list)
    family: int = 4

    @property
    def key(self) -> tuple[str, IPAddress | None, int | None, int | None, int]:
        return (self.protocol, self.address, self.port, self.fwmark, self.family)

    @property
    def label(self) -> str:
        """keepalived's way of naming a service in log lines."""
        if self.fwmark is not None:
            return f"FWM {self.fwmark}"
        return f"[{self.address}]:{self.protocol.lower()}:{self.port}"


class IpvsBackend(Protocol):
    """What the virtual-server manager pushes the desired table to."""

    def apply(self, services: list[IpvsService]) -> object:
        """Make the kernel table match ``services``; may return an awaitable."""
        ...


class NullBackend:
    """No IPVS here: checks still run and events still fire."""

    def __init__(self) -> None:
        self._told = False
        self.services: list[IpvsService] = []

    def apply(self, services: list[IpvsService]) -> None:
        if not self._told:
            logging.getLogger("pykeepalived.lvs").warning(
                "IPVS is not available in this kernel; checking only"
            )
            self._told = True
        self.services = list(services)


__all__ = ["Forward", "IpvsBackend", "IpvsDest", "IpvsService", "NullBackend"]
