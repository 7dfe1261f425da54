"""The IPVS backend: makes the kernel's IPVS table match the desired one.

:class:`IpvsBackend` is what :class:`pykeepalived.core.lvs.manager.VirtualServerManager`
pushes its table to.  Each :meth:`IpvsBackend.apply` reads what the kernel
holds, computes the difference (:func:`.table.plan`) and sends only that:
services and real servers are added, edited in place or deleted one by one;
the table is never flushed behind the user's back.

Ownership: the backend remembers the services it created or took over (a
desired service that already existed).  Only those are ever deleted; a
service someone else created with ipvsadm, and that the configuration does
not name, is left alone.  The memory lives in the backend object, which the
daemon keeps across reloads; after a restart, leftovers that are desired
again are taken over, the others stay (as with keepalived).

Concurrency: everything runs on the event loop through pyroute2's asyncio
netlink socket (no threads; each request is answered by the kernel within
the send).  Overlapping calls are serialised, and a call overtaken by a
newer one while waiting returns without touching the kernel: the newer
table is the one that counts.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyroute2.netlink.exceptions import NetlinkError

from pykeepalived.core.lvs import nft
from pykeepalived.core.lvs.ipvs import netlink as nlk
from pykeepalived.core.lvs.ipvs.netlink import CMD_FLUSH, CMD_NAMES, IpvsNetlink, IpvsUnavailable
from pykeepalived.core.lvs.ipvs.table import Op, OpKind, ServiceKey, Table, kernel_table, plan
from pykeepalived.core.lvs.manager import IpvsService, NullBackend
from pykeepalived.core.lvs.nft import NftBackend

log = logging.getLogger("pykeepalived.ipvs")

MODPROBE_TIMEOUT = 5.0


class FlushOnStop(enum.Enum):
    """global_defs lvs_flush_on_stop: what happens to the table at shutdown."""

    #: (keyword absent) delete each real server and virtual server we own.
    NO = "no"
    #: ``lvs_flush_on_stop``: flush the whole IPVS table in one request.
    ALL = "all"
    #: ``lvs_flush_on_stop VS``: delete each virtual server we own, leaving
    #: its real servers to the kernel.
    VS = "vs"

    @classmethod
    def from_words(cls, words: Sequence[str] | None) -> FlushOnStop:
        """From the keyword's arguments (None: keyword absent)."""
        if words is None:
            return cls.NO
        if not words:
            return cls.ALL
        if words[0].upper() == "VS":
            return cls.VS
        raise ValueError(f"lvs_flush_on_stop: unknown argument {words[0]!r} (VS expected)")


@dataclass
class ApplyResult:
    """What one :meth:`IpvsBackend.apply` did (for logs, status and tests)."""

    done: list[Op] = field(default_factory=list)
    failed: list[tuple[Op, int]] = field(default_factory=list)  # op, errno
    skipped: bool = False  # overtaken by a newer apply


class IpvsBackend:
    """Diff-and-apply IPVS backend (see the module docstring).

    ``flush_at_start`` is global_defs ``lvs_flush``: :meth:`start` flushes the
    table once.  ``flush_on_stop`` is ``lvs_flush_on_stop``: :meth:`stop`
    follows it.  Construct through :func:`open_backend` to get a
    :class:`NullBackend` where the kernel has no IPVS.
    """

    def __init__(
        self, *, flush_at_start: bool = False, flush_on_stop: FlushOnStop = FlushOnStop.NO
    ) -> None:
        self.flush_at_start = flush_at_start
        self.flush_on_stop = flush_on_stop
        self.owned: set[ServiceKey] = set()
        self.last: ApplyResult | None = None
        self._lock = asyncio.Lock()
        self._generation = 0

    async def start(self) -> None:
        """Startup: ``lvs_flush`` empties the table (keepalived does it at start).
        Never raises: a failure is logged and the daemon carries on."""
        if not self.flush_at_start:
            return
        try:
            async with self._lock, IpvsNetlink() as nl:
                await self._flush(nl)
        except (IpvsUnavailable, NetlinkError, TimeoutError, OSError) as exc:
            log.error("IPVS: cannot flush the table at startup: %s", _why(exc))

    async def apply(self, services: list[IpvsService]) -> ApplyResult:
        """Make the kernel hold exactly ``services`` among the services we own.

        Errors of single operations are logged (with keepalived's wording and
        the errno) and do not stop the others; the next apply retries what is
        still different.  Raises :class:`IpvsUnavailable` if IPVS went away.
        """
        self._generation += 1
        generation = self._generation
        desired = kernel_table(services)
        async with self._lock:
            if generation != self._generation:
                return ApplyResult(skipped=True)
            async with IpvsNetlink() as nl:
                result = await self._apply(nl, desired)
        self.last = result
        return result

    async def stop(self) -> None:
        """Shutdown, as lvs_flush_on_stop says.  Never raises (logs instead)."""
        self._generation += 1
        try:
            await self._stop()
        except (IpvsUnavailable, NetlinkError, TimeoutError, OSError) as exc:
            log.error("IPVS: cannot clean up the table at shutdown: %s", _why(exc))

    async def _stop(self) -> None:
        async with self._lock, IpvsNetlink() as nl:
            if self.flush_on_stop is FlushOnStop.ALL:
                await self._flush(nl)
                return
            if self.flush_on_stop is FlushOnStop.VS:
                current = await nl.table(keys=set())
                ops = [Op(OpKind.DEL_SERVICE, k) for k in sorted(self.owned) if k in current]
                result = await self._run(nl, ops)
                self.owned -= {op.service for op in result.done}
                return
            await self._apply(nl, {})

    async def read(self) -> Table:
        """The kernel's whole table, with real servers and their counters."""
        async with IpvsNetlink() as nl:
            return await nl.table()

    # -- internals --

    async def _flush(self, nl: IpvsNetlink) -> None:
        try:
            await nl.flush()
        except NetlinkError as exc:
            _log_error(CMD_FLUSH, "", exc.code)
            return
        self.owned.clear()

    async def _apply(self, nl: IpvsNetlink, desired: Table) -> ApplyResult:
        # Real servers are read only for the services we may touch.
        current = await nl.table(keys=set(desired) | self.owned)
        ops = plan(desired, current, self.owned)
        result = await self._run(nl, ops)
        deleted = {op.service for op in result.done if op.kind is OpKind.DEL_SERVICE}
        gone = {k for k in self.owned - desired.keys() if k not in current}
        self.owned = (self.owned | desired.keys()) - deleted - gone
        return result

    async def _run(self, nl: IpvsNetlink, ops: list[Op]) -> ApplyResult:
        result = ApplyResult()
        dead: set[ServiceKey] = set()  # services whose add failed: skip their dests
        for op in ops:
            if op.service in dead:
                continue
            try:
                await _send(nl, op)
            except NetlinkError as exc:
                if _harmless(op, exc.code):
                    result.done.append(op)
                    continue
                if op.kind is OpKind.ADD_SERVICE and exc.code == errno.EEXIST:
                    # Raced with someone else's add: take it over as it is.
                    assert op.attrs is not None
                    try:
                        await nl.edit_service(op.service, op.attrs)
                        result.done.append(op)
                        continue
                    except NetlinkError as exc2:
                        exc = exc2
                _log_error(_command(op), op, exc.code)
                result.failed.append((op, exc.code))
                if op.kind is OpKind.ADD_SERVICE:
                    dead.add(op.service)
                continue
            log.debug("IPVS: %s", op)
            result.done.append(op)
        return result


def _why(exc: BaseException) -> str:
    if isinstance(exc, NetlinkError):
        return f"{os.strerror(exc.code)}({exc.code})"
    if isinstance(exc, TimeoutError):
        return "no answer from the kernel"
    return str(exc)


def _harmless(op: Op, code: int) -> bool:
    # Idempotence by errno (ip_vs_ctl.c): deleting what is already gone is done.
    return op.kind in (OpKind.DEL_SERVICE, OpKind.DEL_DEST) and code in (errno.ESRCH, errno.ENOENT)


async def _send(nl: IpvsNetlink, op: Op) -> None:
    if op.kind is OpKind.ADD_SERVICE:
        assert op.attrs is not None
        await nl.add_service(op.service, op.attrs)
    elif op.kind is OpKind.EDIT_SERVICE:
        assert op.attrs is not None
        await nl.edit_service(op.service, op.attrs)
    elif op.kind is OpKind.DEL_SERVICE:
        await nl.del_service(op.service)
    elif op.kind is OpKind.ADD_DEST:
        assert op.dest is not None and op.dest_attrs is not None
        await nl.add_dest(op.service, op.dest, op.dest_attrs)
    elif op.kind is OpKind.EDIT_DEST:
        assert op.dest is not None and op.dest_attrs is not None
        await nl.edit_dest(op.service, op.dest, op.dest_attrs)
    else:
        assert op.dest is not None
        await nl.del_dest(op.service, op.dest)


_COMMANDS = {
    OpKind.ADD_SERVICE: nlk.CMD_NEW_SERVICE,
    OpKind.EDIT_SERVICE: nlk.CMD_SET_SERVICE,
    OpKind.DEL_SERVICE: nlk.CMD_DEL_SERVICE,
    OpKind.ADD_DEST: nlk.CMD_NEW_DEST,
    OpKind.EDIT_DEST: nlk.CMD_SET_DEST,
    OpKind.DEL_DEST: nlk.CMD_DEL_DEST,
}


def _command(op: Op) -> int:
    return _COMMANDS[op.kind]


def _log_error(cmd: int, what: object, code: int) -> None:
    # keepalived (ipvswrapper.c): "IPVS cmd %s(%d) error: %s(%d)"
    log.error(
        "IPVS cmd %s(%d) error: %s(%d)%s",
        CMD_NAMES.get(cmd, "?"),
        cmd,
        os.strerror(code),
        code,
        f" ({what})" if what else "",
    )


# -- probing ------------------------------------------------------------------------------------


async def available(*, load_module: bool = True) -> str | None:
    """None if the kernel can do IPVS, else why not (one line, for the log).

    Like keepalived, tries ``modprobe ip_vs`` once when the generic netlink
    family is missing (bounded by MODPROBE_TIMEOUT; a missing modprobe or
    module just means no IPVS).
    """
    reason = await _probe()
    if reason is None or not load_module:
        return reason
    try:
        proc = await asyncio.create_subprocess_exec(
            "modprobe",
            "-q",
            "ip_vs",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return reason
    try:
        await asyncio.wait_for(proc.wait(), MODPROBE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return reason
    return await _probe() if proc.returncode == 0 else reason


async def _probe() -> str | None:
    try:
        async with IpvsNetlink() as nl:
            await nl.services()
    except IpvsUnavailable as exc:
        return str(exc)
    except NetlinkError as exc:
        return f"IPVS netlink error: {os.strerror(exc.code)}({exc.code})"
    except TimeoutError:
        return "IPVS netlink did not answer"
    except OSError as exc:
        return f"no netlink socket: {exc}"
    return None


class NoIpvsBackend(NullBackend):
    """Where the kernel has no IPVS: says so once, with the reason, at the
    first apply; remembers the last table (checks and events carry on)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
        self._said = False

    def apply(self, services: list[IpvsService]) -> None:
        if not self._said:
            log.warning(
                "IPVS is not available in this kernel (%s); checking only, no IPVS table",
                self.reason,
            )
            self._said = True
        self.services = list(services)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


async def open_backend(
    *,
    flush_at_start: bool = False,
    flush_on_stop: FlushOnStop = FlushOnStop.NO,
    load_module: bool = True,
    kind: str = "auto",
) -> IpvsBackend | NftBackend | NoIpvsBackend:
    """An :class:`IpvsBackend`, an :class:`~pykeepalived.core.lvs.nft.NftBackend`
    or, where neither works, a :class:`NoIpvsBackend`.  All have ``apply``,
    ``start`` and ``stop``.  ``kind`` is global_defs ``lvs_backend``: "auto"
    takes IPVS where the kernel has it and nftables elsewhere, so an unchanged
    keepalived.conf works on a kernel without ip_vs.  ``load_module``: try
    ``modprobe ip_vs`` first, as keepalived does."""
    if kind == "nftables":
        why_not = await nft.available()
        if why_not is None:
            log.info("LVS: virtual servers served by nftables (lvs_backend nftables)")
            return NftBackend()
        log.error("LVS: lvs_backend nftables: nftables cannot be used (%s)", why_not)
        return NoIpvsBackend(f"nftables: {why_not}")
    reason = await available(load_module=load_module)
    if reason is None:
        return IpvsBackend(flush_at_start=flush_at_start, flush_on_stop=flush_on_stop)
    if kind == "auto":
        why_not = await nft.available()
        if why_not is None:
            log.warning(
                "IPVS is not available in this kernel (%s); virtual servers served by"
                " nftables (table %s, NAT only)",
                reason,
                nft.TABLE,
            )
            return NftBackend()
        reason = f"{reason}; nftables: {why_not}"
    return NoIpvsBackend(reason)
