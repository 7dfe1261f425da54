"""The daemon's lifecycle: signals -> start-up -> run -> graceful shutdown.

SIGHUP reloads the configuration (unchanged VRRP instances keep their
state and VIPs), SIGTERM/SIGINT shut down (priority-0 adverts, VIPs
removed, exit 0); SIGUSR1, SIGUSR2 and keepalived's JSON and STATS_CLEAR
signals write keepalived's dumps (core/shell/dumps.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import inspect
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from pykeepalived.core.config import Config, Diagnostic, LoadResult, Severity
from pykeepalived.core.plugin.base import EventKind, StateEvent
from pykeepalived.core.plugin.manager import PluginRegistry
from pykeepalived.core.shell.pidfile import remove_pid, running_pid, write_pid
from pykeepalived.core.shell.sdnotify import SdNotifier, WatchdogPinger
from pykeepalived.core.shell.startup import (
    DEFAULT_PID_FILE,
    EXIT_CONFIG,
    EXIT_FATAL,
    EXIT_OK,
    load_config,
)
from pykeepalived.core.vrrp.effects import Netlink

if TYPE_CHECKING:
    from pykeepalived.core.config.model import LvsSyncDaemon
    from pykeepalived.core.events import EventDispatcher
    from pykeepalived.core.lvs.ipvs import IpvsBackend, NoIpvsBackend
    from pykeepalived.core.lvs.manager import VirtualServerManager
    from pykeepalived.core.lvs.nft import NftBackend
    from pykeepalived.core.lvs.syncd import SyncDaemonController
    from pykeepalived.core.shell.http_api import HttpApi
    from pykeepalived.core.shell.loopthread import LoopThread
    from pykeepalived.core.shell.status import StatusServer
    from pykeepalived.core.tracking import TrackerSet
    from pykeepalived.core.vrrp.manager import VrrpManager

log = logging.getLogger("pykeepalived")

SHUTDOWN_TIMEOUT = 10.0
#: How many state changes the status and the dashboard keep.
TRANSITIONS_KEPT = 50
HOOK_TIMEOUT = 30.0


class Daemon:
    def __init__(
        self, args: argparse.Namespace, result: LoadResult, registry: PluginRegistry
    ) -> None:
        self.args = args
        self.config: Config = result.config
        self.registry = registry
        self.started = time.time()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self.netlink = Netlink()
        # The engines and servers a configuration asks for (the others stay None);
        # their modules are imported only then, to keep a VRRP-only daemon small.
        self.vrrp: VrrpManager | None = None
        self.vrrp_thread: LoopThread | None = None
        self._main_loop: asyncio.AbstractEventLoop | None = None
        self.trackers: TrackerSet | None = None
        self.events: EventDispatcher | None = None
        self.lvs: VirtualServerManager | None = None
        self.ipvs: IpvsBackend | NftBackend | NoIpvsBackend | None = None
        #: The kernel's IPVS connection sync daemon (global_defs lvs_sync_daemon).
        self.syncd: SyncDaemonController | None = None
        self.status_server: StatusServer | None = None
        self.http_api: HttpApi | None = None
        #: Last state of each VRRP instance, from its events (main loop only):
        #: ha_suspend needs "is any instance MASTER" without reading the
        #: VRRP thread's objects.
        self._instance_states: dict[str, str] = {}
        #: The last state changes, newest first (status, dashboard).
        self.transitions: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=TRANSITIONS_KEPT
        )
        self._hook_tasks: set[asyncio.Task[None]] = set()
        #: systemd's notify protocol (a no-op without $NOTIFY_SOCKET).
        self.sd = SdNotifier()
        self.watchdog: WatchdogPinger | None = None
        self._sd_status_task: asyncio.Task[None] | None = None

    # -- events ------------------------------------------------------------------
    def emit(self, event: StateEvent) -> None:
        if self.events is not None:
            self.events.emit(event)
        if event.kind is EventKind.INSTANCE:
            if event.state == "DELETED":
                self._instance_states.pop(event.name, None)
            elif event.state in ("INIT", "BACKUP", "MASTER", "FAULT", "STOP"):
                # not MASTER_RX_LOWER_PRI, SPLIT_BRAIN...: reports, not states
                self._instance_states[event.name] = event.state
            self._ha_suspend_update()
            if self.syncd is not None and self.syncd.instance == event.name:
                self.syncd.instance_state(event.state)
        if self.sd.enabled:
            self._sd_status_soon()
        self.transitions.appendleft(
            {
                "time": event.timestamp,
                "kind": event.kind.value,
                "name": event.name,
                "previous": event.previous,
                "state": event.state,
                "detail": event.detail,
            }
        )
        if self.http_api is not None:
            self.http_api.changes.notify()

    def _sd_status_soon(self) -> None:
        """STATUS= after a burst of transitions (one update per burst)."""
        if self._stop.is_set() or (
            self._sd_status_task is not None and not self._sd_status_task.done()
        ):
            return
        self._sd_status_task = asyncio.get_running_loop().create_task(
            self._sd_status(0.1), name="sdnotify:status"
        )

    async def _sd_status(self, delay: float = 0.0) -> None:
        from pykeepalived.core.shell.statusview import summary_line

        await asyncio.sleep(delay)
        try:
            status = await asyncio.wait_for(self.status_async(), 5.0)
        except Exception as exc:  # the VRRP loop may be stopping or stuck
            log.debug("STATUS= not updated: %s", exc)
            return
        self.sd.status(summary_line(status))

    def _start_watchdog(self) -> None:
        """WATCHDOG=1 from the VRRP loop (the main loop with -C): see sdnotify.py."""
        interval = self.sd.watchdog_interval
        if interval is None:
            return
        self.watchdog = WatchdogPinger(self.sd, interval)
        if self.vrrp_thread is not None:
            self.vrrp_thread.call_soon(self.watchdog.start, self.vrrp_thread.loop)
        else:
            self.watchdog.start(asyncio.get_running_loop())

    def _emit_from_vrrp(self, event: StateEvent) -> None:
        """Called on the VRRP thread: hand the event to the main loop."""
        if self._main_loop is not None and not self._main_loop.is_closed():
            self._main_loop.call_soon_threadsafe(self.emit, event)

    def _ha_suspend_update(self) -> None:
        if self.vrrp is None or self.lvs is None:
            return
        self.lvs.set_vrrp_master(any(s == "MASTER" for s in self._instance_states.values()))

    # -- start / stop ---------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self._start_events()
        await self._hook("pykeepalived_configure", config=self.config)
        if not self.args.check:
            from pykeepalived.core.shell.loopthread import LoopThread
            from pykeepalived.core.vrrp.manager import VrrpManager

            # The VRRP engine gets a loop of its own: see core/shell/loopthread.py.
            self._main_loop = loop
            self.vrrp_thread = LoopThread("vrrp")
            self.vrrp_thread.start()
            self.vrrp = VrrpManager(self.netlink, self._emit_from_vrrp)
            await self.vrrp_thread.call(self.vrrp.start, self.config, self.vrrp_thread.loop)
            await self._start_trackers()
        if not self.args.vrrp and self.config.virtual_servers:
            await self._start_lvs()
        await self._start_syncd()
        if getattr(self.args, "http_listen", None):
            from pykeepalived.core.shell.http_api import HttpApi, parse_listen

            host, port = parse_listen(self.args.http_listen)
            token = None
            token_file = getattr(self.args, "http_token_file", None)
            if token_file:
                from pykeepalived.core.shell.http_api import read_token

                try:
                    token = read_token(token_file)
                except (OSError, ValueError) as exc:
                    log.error("--http-token-file: %s; HTTP server not started", exc)
            if token is not None or not token_file:
                self.http_api = HttpApi(host, port, self.status_async, token=token)
                try:
                    await self.http_api.start()
                except OSError as exc:
                    log.error("--http-listen %s: %s", self.args.http_listen, exc)
                    self.http_api = None
        if self.args.status_socket:
            from pykeepalived.core.shell.status import StatusServer

            self.status_server = StatusServer(
                self.args.status_socket,
                self.status_async,
                {"reload-preview": self.reload_preview},
            )
            try:
                await self.status_server.start()
            except OSError as exc:
                log.error("--status-socket %s: %s", self.args.status_socket, exc)
                self.status_server = None
        self._start_watchdog()

    async def _start_events(self) -> None:
        from pykeepalived.core.events import EventDispatcher

        router_id = self.config.global_defs.router_id or os.uname().nodename
        self.events = EventDispatcher(self.config, self.registry, router_id)
        await self.events.start()

    async def _start_trackers(self) -> None:
        from pykeepalived.core.tracking import TrackerSet

        self.trackers = TrackerSet(self.config, self.registry, on_change=self._tracking_changed)
        await self.trackers.start()
        for vi in self.config.vrrp_instances:
            self._tracking_changed(vi.name)

    def _tracking_changed(self, name: str) -> None:
        if self.vrrp is None or self.vrrp_thread is None or self.trackers is None:
            return
        verdict = self.trackers.verdict(name)
        self.vrrp_thread.call_soon(
            self.vrrp.apply_tracking, name, verdict.priority, verdict.fault, verdict.fault_reason
        )

    async def _start_lvs(self) -> None:
        from pykeepalived.core.lvs.ipvs import FlushOnStop, open_backend
        from pykeepalived.core.lvs.manager import VirtualServerManager

        gd = self.config.global_defs
        self.ipvs = await open_backend(
            flush_at_start=gd.lvs_flush,
            flush_on_stop=FlushOnStop.from_words(gd.lvs_flush_on_stop),
            kind=gd.lvs_backend,
        )
        await self.ipvs.start()
        self.lvs = VirtualServerManager(
            self.config, self.registry.checkers, backend=self.ipvs, emit=self.emit
        )
        await self.lvs.start()
        self._ha_suspend_update()

    async def _reload_lvs(self) -> None:
        """A new manager for the new virtual servers; the IPVS backend applies
        its table as a diff against the kernel's, so nothing is flushed and
        live connections survive.  Real servers in both configurations keep
        their health."""
        old = self.lvs
        wanted = not self.args.vrrp and bool(self.config.virtual_servers)
        if old is None:
            if wanted:
                await self._start_lvs()
            return
        if not wanted:
            await self._stop_lvs()
            return
        await old.stop(remove_services=False)
        from pykeepalived.core.lvs.manager import VirtualServerManager

        self.lvs = VirtualServerManager(
            self.config, self.registry.checkers, backend=self.ipvs, emit=self.emit
        )
        self.lvs.inherit(old)
        await self.lvs.start()
        self._ha_suspend_update()

    def _syncd_wanted(self) -> LvsSyncDaemon | None:
        """lvs_sync_daemon where keepalived 2.2.7 runs it: with an instance,
        in the VRRP process (not with -C); without one, in the checker
        process, which runs only with virtual servers (not with -P)."""
        cfg = self.config.global_defs.lvs_sync_daemon
        if cfg is None:
            return None
        if cfg.instance is not None:
            return cfg if self.vrrp is not None else None
        return cfg if not self.args.vrrp and self.config.virtual_servers else None

    async def _start_syncd(self) -> None:
        cfg = self._syncd_wanted()
        if cfg is None:
            return
        # only here: the module needs pyroute2 (10 MB), a daemon without it never loads it
        from pykeepalived.core.lvs.syncd import SyncDaemonController

        self.syncd = SyncDaemonController(cfg, instance_driven=cfg.instance is not None)
        await self.syncd.start(self._instance_states.get(cfg.instance or ""))

    async def _reload_syncd(self) -> None:
        cfg = self._syncd_wanted()
        old = self.syncd
        if old is not None and (cfg is None or old.instance_driven != (cfg.instance is not None)):
            await self._stop_syncd()
            old = None
        if cfg is None:
            return
        if old is None:
            await self._start_syncd()
        else:
            old.reconfigure(cfg, self._instance_states.get(cfg.instance or ""))

    async def _stop_syncd(self) -> None:
        if self.syncd is not None:
            await self.syncd.stop()
            self.syncd = None

    async def _stop_lvs(self) -> None:
        if self.lvs is not None:
            await self.lvs.stop()
            self.lvs = None
        if self.ipvs is not None:
            await self.ipvs.stop()
            self.ipvs = None

    async def stop(self) -> None:
        if self.watchdog is not None and self.vrrp_thread is None:
            self.watchdog.stop()
        if self.trackers is not None:
            await self.trackers.stop()
        if self.vrrp is not None and self.vrrp_thread is not None:
            await self.vrrp_thread.call(self.vrrp.stop)
            self.vrrp_thread.stop()
        await self._stop_syncd()
        await self._stop_lvs()
        await self._hook("pykeepalived_unconfigure", config=self.config)
        if self.events is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.events.close(), SHUTDOWN_TIMEOUT)
        if self.status_server is not None:
            await self.status_server.close()
        if self.http_api is not None:
            await self.http_api.close()
        self.netlink.close()

    async def reload(self) -> None:
        loaded = load_config(self.args)
        if loaded is None:
            log.error(
                "Reload failed: plugins could not be loaded; keeping the running configuration"
            )
            return
        result, _ = loaded
        for d in result.diagnostics.items:
            _log_diag(d)
        if not result.ok:
            log.error("Reload failed: configuration has errors; keeping the running configuration")
            return
        log.info("Reloading configuration")
        await self._hook("pykeepalived_unconfigure", config=self.config)
        old = self.config
        self.config = result.config
        if self.trackers is not None:
            await self.trackers.stop()
            self.trackers = None
        if self.events is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.events.close(), SHUTDOWN_TIMEOUT)
            await self._start_events()
        if self.vrrp is not None and self.vrrp_thread is not None:
            await self.vrrp_thread.call(self.vrrp.reload, self.config)
            await self._start_trackers()
        await self._reload_lvs()
        await self._reload_syncd()
        await self._hook("pykeepalived_configure", config=self.config)
        del old

    async def reload_preview(self, path: str) -> dict[str, Any]:
        """What a SIGHUP would change if the configuration were ``path`` (the
        running daemon's file when empty); nothing is applied
        (core/shell/reloadplan.py)."""
        from pykeepalived.core.shell.reloadplan import preview

        args = argparse.Namespace(**vars(self.args))
        args.file = path or self.args.file
        loaded = await asyncio.to_thread(load_config, args)
        if loaded is None:
            return {"error": "plugins could not be loaded"}
        result, registry = loaded
        live = {i["name"]: i["state"] for i in (await self.status_async())["vrrp_instances"]}
        return preview(
            self.config,
            result,
            live,
            self.lvs,
            dict(registry.checkers),
            vrrp_runs=not self.args.check,
            lvs_runs=not self.args.vrrp,
        )

    async def _hook(self, name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook plugin by plugin, as core/plugin/hookspecs.py says:
        a returned awaitable is awaited, one plugin at a time, under
        HOOK_TIMEOUT; a failure or timeout is logged with the plugin's name
        and the next plugin is called."""
        caller = getattr(self.registry.hook, name)
        for impl in caller.get_hookimpls():
            try:
                res = impl.function(**kwargs)
                if inspect.isawaitable(res):
                    await asyncio.wait_for(res, HOOK_TIMEOUT)
            except TimeoutError:
                log.error(
                    "plugin %s: %s took more than %.0fs; carrying on",
                    impl.plugin_name,
                    name,
                    HOOK_TIMEOUT,
                )
            except Exception:
                log.exception("plugin %s: %s failed", impl.plugin_name, name)

    # -- status ---------------------------------------------------------------------
    async def status_async(self) -> dict[str, Any]:
        """The status, with the VRRP part read on the VRRP thread."""
        vrrp: list[dict[str, Any]] = []
        vrrp_tasks = 0
        if self.vrrp is not None and self.vrrp_thread is not None:
            vrrp = await self.vrrp_thread.call(self.vrrp.status)
            # counted on the VRRP thread: all_tasks() of another thread's loop races
            vrrp_tasks = await self.vrrp_thread.call(lambda: len(asyncio.all_tasks()))
        out = self.status(vrrp)
        # both loops' pending tasks, the one reading this included: a leak of
        # tasks shows as growth here (bench/soak watches it)
        out["asyncio_tasks"] = len(asyncio.all_tasks()) + vrrp_tasks
        return out

    def status(self, vrrp: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 3),
            "config_files": self.config.files,
            "plugins": self.registry.plugin_names(),
            "vrrp_instances": vrrp if vrrp is not None else [],
            "transitions": list(self.transitions),
        }
        if self.trackers is not None:
            out["trackers"] = self.trackers.status()
        if self.lvs is not None:
            out["virtual_servers"] = self.lvs.status()
        if self.syncd is not None:
            out["lvs_sync_daemon"] = self.syncd.status()
        return out

    # -- keepalived's dumps (SIGUSR1, SIGUSR2, JSON, STATS_CLEAR) -----------------------
    def on_dump_signal(self, what: str) -> None:
        """A dump signal: ``what`` is keepalived's --signum name."""
        task = asyncio.get_running_loop().create_task(self._dump(what), name=f"dump:{what}")
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

    async def _dump(self, what: str) -> None:
        from pykeepalived.core.shell import dumps

        vrrp: list[dict[str, Any]] = []
        if self.vrrp is not None and self.vrrp_thread is not None:
            # STATS_CLEAR: read and zero on the VRRP thread in one go, so no
            # advert counted in between is lost
            vrrp = await self.vrrp_thread.call(
                functools.partial(self.vrrp.status, clear_stats=what == "STATS_CLEAR")
            )
        snap = dumps.Snapshot(
            config=self.config,
            vrrp=vrrp,
            trackers=self.trackers.status() if self.trackers is not None else [],
            lvs=self.lvs.status() if self.lvs is not None else [],
        )
        paths = dumps.DumpPaths.from_config(self.config.global_defs)
        files: list[tuple[str, str]] = []
        pid = os.getpid()
        # keepalived's log lines (vrrp_daemon.c sigusr1_vrrp ...); its VRRP
        # process answers all four signals, its checker process SIGUSR1 only
        if what == "DATA":
            if self.vrrp is not None:
                log.info("Printing VRRP data for process(%d) on signal", pid)
                files.append((paths.data, dumps.render_data(snap)))
            if self.lvs is not None:
                log.info("Printing checker data for process(%d) on signal", pid)
                files.append((paths.check_data, dumps.render_check_data(snap)))
        elif self.vrrp is None:
            return
        elif what in ("STATS", "STATS_CLEAR"):
            clearing = "and clearing " if what == "STATS_CLEAR" else ""
            log.info("Printing %sVRRP stats for process(%d) on signal", clearing, pid)
            files.append((paths.stats, dumps.render_stats(snap)))
        elif what == "JSON" and self.config.vrrp_instances:
            log.info("Printing VRRP as json for process(%d) on signal", pid)
            files.append((paths.json, dumps.render_json(snap)))
        for path, text in files:
            try:
                dumps.write_atomic(path, text)
            except OSError as exc:
                log.error("Can't open dump file %s (%s)", path, exc.strerror or exc)

    # -- main loop --------------------------------------------------------------------
    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        # from version, not dumps: the dump writers load with the first dump signal
        from pykeepalived.core.shell.version import signal_numbers

        for what, signum in signal_numbers().items():
            if what in ("DATA", "STATS", "JSON", "STATS_CLEAR"):
                loop.add_signal_handler(signum, self.on_dump_signal, what)
        log.info("Starting pykeepalived (pid %d), config %s", os.getpid(), self.args.file)
        await self.start()
        release_memory()
        # READY=1: the configuration is applied and every socket is open.
        await self._sd_ready()
        while not self._stop.is_set():
            stop_wait = loop.create_task(self._stop.wait(), name="daemon:wait-stop")
            reload_wait = loop.create_task(self._reload.wait(), name="daemon:wait-reload")
            await asyncio.wait({stop_wait, reload_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            reload_wait.cancel()
            if self._reload.is_set() and not self._stop.is_set():
                self._reload.clear()
                self.sd.reloading()
                try:
                    await self.reload()
                except Exception:
                    log.exception("Reload failed")
                release_memory()
                # Done, with the new configuration or (refused) the old one.
                await self._sd_ready()
        self.sd.stopping()
        log.info("Stopping")
        try:
            await asyncio.wait_for(self.stop(), SHUTDOWN_TIMEOUT)
        except TimeoutError:
            log.error("shutdown took more than %.0fs; cancelling what is left", SHUTDOWN_TIMEOUT)
        # An async pykeepalived_unconfigure (or a status write) gets the
        # shutdown budget to finish; asyncio.run would cancel it silently.
        if self._hook_tasks:
            _, late = await asyncio.wait(set(self._hook_tasks), timeout=SHUTDOWN_TIMEOUT)
            for task in late:
                log.warning("%s still running at shutdown; cancelled", task.get_name())
                task.cancel(msg="pykeepalived is stopping")
            await asyncio.gather(*late, return_exceptions=True)
        log.info("Stopped pykeepalived")
        self.sd.close()
        return EXIT_OK

    async def _sd_ready(self) -> None:
        if not self.sd.enabled:
            return
        from pykeepalived.core.shell.statusview import summary_line

        try:
            summary = summary_line(await asyncio.wait_for(self.status_async(), 5.0))
        except Exception:
            summary = ""
        self.sd.ready(summary)


def release_memory() -> None:
    """Hand the heap pages that loading freed back to the kernel.

    Reading keepalived.conf and building the engines leave freed memory in
    glibc's heap, which a long-lived daemon would hold as RSS forever (about
    1 MB at 200 instances).  ``malloc_trim`` returns it; elsewhere than glibc
    (musl has no malloc_trim) there is nothing to do.
    """
    import ctypes  # loaded already: the VRRP send sockets' filter uses it
    import gc

    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _log_diag(d: Diagnostic) -> None:
    level = {Severity.ERROR: logging.ERROR, Severity.WARNING: logging.WARNING}.get(
        d.severity, logging.INFO
    )
    log.log(level, "%s", d)


def run_daemon(args: argparse.Namespace) -> int:
    loaded = load_config(args)
    if loaded is None:
        return EXIT_FATAL
    result, registry = loaded
    for d in result.diagnostics.items:
        _log_diag(d)
    if not result.ok:
        log.error("configuration has errors; not starting")
        return EXIT_CONFIG
    if args.dump_conf:
        from pykeepalived.core.config.dump import dump_json

        for line in dump_json(result.config).splitlines():
            log.info("%s", line)
    pid_files = _pid_files(args, result.config)
    for path in pid_files:
        if running_pid(path) is not None:
            # keepalived 2.2.7 logs this and exits with status 0.
            log.info("daemon is already running (pid file %s)", path)
            return EXIT_OK
    written: list[str] = []
    try:
        for path in pid_files:
            try:
                write_pid(path)
            except OSError as exc:
                log.error("cannot write pid file %s: %s", path, exc)
                return EXIT_FATAL
            written.append(path)
        # The parse tree is for tools (tests, dumps of the text); the model is built,
        # so the daemon lets it go: about 3.5 KB a VRRP instance for the process' life.
        result.tree.clear()
        return asyncio.run(Daemon(args, result, registry).main())
    finally:
        for path in written:
            remove_pid(path)


def _pid_files(args: argparse.Namespace, config: Config) -> list[str]:
    """-p always (default /run/keepalived.pid); -r / -c when given and
    their part runs, as keepalived writes its children's (core/shell/pidfile.py)."""
    files = [getattr(args, "pid_file", None) or DEFAULT_PID_FILE]
    vrrp_pid = getattr(args, "vrrp_pid_file", None)
    if vrrp_pid and not args.check and config.vrrp_instances:
        files.append(vrrp_pid)
    checkers_pid = getattr(args, "checkers_pid_file", None)
    if checkers_pid and not args.vrrp and config.virtual_servers:
        files.append(checkers_pid)
    return list(dict.fromkeys(files))
