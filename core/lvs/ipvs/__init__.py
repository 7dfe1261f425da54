"""IPVS: program the kernel's virtual-server table as a diff (pyroute2 generic netlink).

``await open_backend(...)`` gives an :class:`IpvsBackend` (or a
:class:`NoIpvsBackend` where the kernel has no IPVS) for
:class:`pykeepalived.core.lvs.manager.VirtualServerManager`.  :mod:`.table` is the
pure part (kernel terms and the diff), :mod:`.netlink` the IPVS generic
netlink client, :mod:`.backend` the two put together.
"""

from __future__ import annotations

from pykeepalived.core.lvs.ipvs.backend import (
    ApplyResult,
    FlushOnStop,
    IpvsBackend,
    NoIpvsBackend,
    available,
    open_backend,
)
from pykeepalived.core.lvs.ipvs.netlink import IpvsNetlink, IpvsUnavailable
from pykeepalived.core.lvs.ipvs.table import (
    DestAttrs,
    DestKey,
    FwdMethod,
    KernelService,
    Op,
    OpKind,
    ServiceAttrs,
    ServiceKey,
    Table,
    kernel_table,
    plan,
)

__all__ = [
    "ApplyResult",
    "DestAttrs",
    "DestKey",
    "FlushOnStop",
    "FwdMethod",
    "IpvsBackend",
    "IpvsNetlink",
    "IpvsUnavailable",
    "KernelService",
    "NoIpvsBackend",
    "Op",
    "OpKind",
    "ServiceAttrs",
    "ServiceKey",
    "Table",
    "available",
    "kernel_table",
    "open_backend",
    "plan",
]
