"""The kernel's IPVS connection sync daemon, driven as keepalived 2.2.7 drives it.

global_defs ``lvs_sync_daemon INTERFACE VRRP_INSTANCE ...`` (or the
deprecated vrrp_instance ``lvs_sync_daemon_interface``) makes the kernel
multicast its IPVS connection entries from the director that is MASTER of
that instance to the others, so after a failover the new master already
knows every established connection and keeps sending it to the same real
server.  The kernel does the work (net/netfilter/ipvs/ip_vs_sync.c); this
module only starts and stops its two threads through IPVS generic netlink
(IPVS_CMD_NEW_DAEMON / IPVS_CMD_DEL_DAEMON):

* With an instance (keepalived's VRRP process, vrrp_scheduler.c, vrrp.c):
  the backup daemon starts with the VRRP engine; becoming MASTER stops the
  backup daemon and starts the master one (``ipvs_syncd_master``); leaving
  MASTER (to BACKUP or FAULT) does the reverse (``ipvs_syncd_backup``);
  BACKUP <-> FAULT changes nothing.  At stop the daemon of the current state
  is stopped.
* Without an instance (keepalived's checker process, check_daemon.c): both
  daemons run while the virtual servers are served (stale ones from an
  abnormal end are stopped first); both are stopped at stop.

The controller runs on the daemon's main loop; the VRRP states reach it
from the events bus (core/shell/daemon.py), so the VRRP and LVS engines stay
unaware of each other (.importlinter).  Requests are applied in order by one
task, so a quick MASTER -> BACKUP -> MASTER never reorders kernel commands.
Where the kernel has no IPVS (the nftables backend serves the virtual
servers) nothing can sync: that is logged once and the setting is not
applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from pykeepalived.core.config.model import LvsSyncDaemon
from pykeepalived.core.lvs.ipvs.backend import available
from pykeepalived.core.lvs.ipvs.netlink import (
    DAEMON_BACKUP,
    DAEMON_MASTER,
    IpvsNetlink,
    IpvsUnavailable,
)

log = logging.getLogger("pykeepalived.lvs.syncd")

NAMES = {DAEMON_MASTER: "master", DAEMON_BACKUP: "backup"}


@dataclass(frozen=True)
class SyncParams:
    """What the kernel is given (keepalived's ``ipvs_syncd_changed`` compares these)."""

    interface: str
    syncid: int
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: str | None = None

    @classmethod
    def of(cls, cfg: LvsSyncDaemon) -> SyncParams:
        return cls(
            cfg.interface,
            cfg.syncid or 0,
            cfg.maxlen,
            cfg.port,
            cfg.ttl,
            str(cfg.group) if cfg.group is not None else None,
        )

    def attrs(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [
            ("IPVS_DAEMON_ATTR_MCAST_IFN", self.interface),
            ("IPVS_DAEMON_ATTR_SYNC_ID", self.syncid),
        ]
        # keepalived sends only what is configured: the kernel's defaults
        # (maxlen from the MTU, port 8848, ttl 1, 224.0.0.81) apply otherwise.
        if self.maxlen is not None:
            out.append(("IPVS_DAEMON_ATTR_SYNC_MAXLEN", self.maxlen))
        if self.port is not None:
            out.append(("IPVS_DAEMON_ATTR_MCAST_PORT", self.port))
        if self.ttl is not None:
            out.append(("IPVS_DAEMON_ATTR_MCAST_TTL", self.ttl))
        if self.group is not None:
            group = ipaddress.ip_address(self.group)
            six = "6" if group.version == 6 else ""
            out.append((f"IPVS_DAEMON_ATTR_MCAST_GROUP{six}", group.packed))
        return out

    def describe(self) -> str:
        extra = [
            f"{k} {v}"
            for k, v in (
                ("maxlen", self.maxlen),
                ("port", self.port),
                ("ttl", self.ttl),
                ("group", self.group),
            )
            if v is not None
        ]
        return " ".join([f"on {self.interface}", f"syncid {self.syncid}", *extra])


def wanted_role(state: str | None) -> int:
    """The daemon an instance state asks for: master on MASTER, else backup
    (keepalived starts the backup daemon at init and switches on leaving MASTER)."""
    return DAEMON_MASTER if state == "MASTER" else DAEMON_BACKUP


class SyncDaemonController:
    """Starts, switches and stops the kernel's sync daemons for one setting.

    ``instance_driven``: follow :meth:`instance_state` (one daemon at a
    time); else run master and backup together.  Call :meth:`start` once,
    then :meth:`instance_state` on every state of the instance, then
    :meth:`stop`; :meth:`reconfigure` at reload.
    """

    def __init__(self, cfg: LvsSyncDaemon, *, instance_driven: bool) -> None:
        self.cfg = cfg
        self.params = SyncParams.of(cfg)
        self.instance_driven = instance_driven
        #: The daemons this controller started and has not stopped.
        self.running: set[int] = set()
        self.unavailable: str | None = None
        self._nl: IpvsNetlink | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._role = DAEMON_BACKUP

    @property
    def instance(self) -> str | None:
        return self.cfg.instance if self.instance_driven else None

    async def start(self, state: str | None = None) -> None:
        reason = await available(load_module=True)
        if reason is None:
            nl = IpvsNetlink()
            try:
                self._nl = await nl.__aenter__()
            except (IpvsUnavailable, NetlinkError, OSError, TimeoutError) as exc:
                reason = str(exc)
        if reason is not None:
            # Never silently: the kernel has no IPVS here (the nftables
            # backend may serve the virtual servers), so no connection sync.
            self.unavailable = reason
            log.warning(
                "lvs_sync_daemon needs IPVS (the kernel's ip_vs) and is not applied: %s", reason
            )
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lvs:syncd")
        if self.instance_driven:
            self._role = wanted_role(state)
            self._queue.put_nowait(("switch", self._role))
        else:
            self._queue.put_nowait(("both", None))

    def instance_state(self, state: str) -> None:
        """A state of the instance (from the events bus); STOP and reports
        that are not states change nothing."""
        if not self.instance_driven or self._task is None:
            return
        if state not in ("INIT", "BACKUP", "MASTER", "FAULT"):
            return
        role = wanted_role(state)
        if role != self._role:
            self._role = role
            self._queue.put_nowait(("switch", role))

    def reconfigure(self, cfg: LvsSyncDaemon, state: str | None) -> None:
        """Reload: new parameters restart the daemon(s) with them; a new
        instance is followed from its current state."""
        params = SyncParams.of(cfg)
        self.cfg = cfg
        if self._task is None:
            return
        if params != self.params:
            self.params = params
            self._queue.put_nowait(("restart", None))
        if self.instance_driven:
            role = wanted_role(state)
            if role != self._role:
                self._role = role
                self._queue.put_nowait(("switch", role))

    async def stop(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(("stop", None))
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._nl is not None:
            await self._nl.__aexit__(None, None, None)
            self._nl = None

    async def wait_idle(self) -> None:
        """Until every queued request has been applied (tests, status)."""
        await self._queue.join()

    def status(self) -> dict[str, Any]:
        return {
            "interface": self.params.interface,
            "instance": self.instance,
            "syncid": self.params.syncid,
            "running": sorted(NAMES[s] for s in self.running),
            "applied": self.unavailable is None,
        }

    # -- applying, in order ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            what, arg = await self._queue.get()
            try:
                if what == "switch":
                    await self._switch(arg)
                elif what == "both":
                    # check_daemon.c: stale daemons of an abnormal end go first.
                    for s in (DAEMON_MASTER, DAEMON_BACKUP):
                        await self._stop(s, quiet=True)
                    for s in (DAEMON_MASTER, DAEMON_BACKUP):
                        await self._start(s)
                elif what == "restart":
                    states = sorted(self.running)
                    for s in states:
                        await self._stop(s)
                    for s in states:
                        await self._start(s)
                elif what == "stop":
                    for s in sorted(self.running):
                        await self._stop(s)
            except Exception:  # a bug must not end the task: later requests still apply
                log.exception("lvs_sync_daemon: %s failed", what)
            finally:
                self._queue.task_done()

    async def _switch(self, role: int) -> None:
        other = DAEMON_BACKUP if role == DAEMON_MASTER else DAEMON_MASTER
        if other in self.running:
            await self._stop(other)
        if role not in self.running:
            await self._start(role)

    async def _start(self, state: int) -> None:
        assert self._nl is not None
        try:
            await self._nl.start_daemon(state, self.params.attrs())
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                log.error(
                    "lvs_sync_daemon: cannot start the %s sync daemon %s: %s",
                    NAMES[state],
                    self.params.describe(),
                    _strerror(exc.code),
                )
                return
            # Already running (left by an earlier run): keepalived logs the
            # error and carries on with it; it is ours to stop from now on.
            log.warning("lvs_sync_daemon: the %s sync daemon was already running", NAMES[state])
        except TimeoutError:
            log.error("lvs_sync_daemon: no answer from IPVS starting the %s daemon", NAMES[state])
            return
        else:
            log.info("Starting IPVS %s sync daemon %s", NAMES[state], self.params.describe())
        self.running.add(state)

    async def _stop(self, state: int, *, quiet: bool = False) -> None:
        assert self._nl is not None
        self.running.discard(state)
        try:
            await self._nl.stop_daemon(state)
        except NetlinkError as exc:
            if not quiet and exc.code != errno.ESRCH:
                log.error(
                    "lvs_sync_daemon: cannot stop the %s sync daemon: %s",
                    NAMES[state],
                    _strerror(exc.code),
                )
            return
        except TimeoutError:
            log.error("lvs_sync_daemon: no answer from IPVS stopping the %s daemon", NAMES[state])
            return
        log.info("Stopping IPVS %s sync daemon", NAMES[state])


def _strerror(code: int) -> str:
    return f"{os.strerror(code)} (errno {code})"
