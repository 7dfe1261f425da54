"""Real-server health checking: the shared checker grammar and the scheduler.

Grammar.  Every checker block (``TCP_CHECK { ... }``, ``HTTP_GET { ... }``,
...) accepts keepalived's common keywords: connect_ip, connect_port, bindto,
bind_port, bind_if, fwmark, connect_timeout, retry (old name nb_get_retry),
delay_before_retry, warmup, delay_loop, alpha, log_all_failures.  A plugin
declares its block with :func:`checker_kw`, giving a dataclass derived from
:class:`CheckOptions` for its own keywords; the result lands in
``RealServer.checkers`` as a :class:`CheckerConf`.

Defaults.  A value not given in the checker comes from the enclosing
real_server, then the virtual_server, then keepalived's default
(keepalived.conf(5): delay_loop 60 s, connect_timeout 5 s, retry 1 except
DNS_CHECK 3 and MISC_CHECK 0, delay_before_retry 3 s for HTTP_GET/SSL_GET,
delay_loop for DNS_CHECK and 1 s otherwise, warmup up to delay_loop).
:func:`resolve` fills them in once, when checks are built.

Schedule.  :class:`CheckScheduler` runs each check the way keepalived's
checker threads do (check_tcp.c ``tcp_epilog``): an attempt delay_loop
after the previous one ended; a failed attempt of an up checker is retried ``retry``
times, delay_before_retry apart, before the checker goes down; a down
checker goes up on its first success.  The first check starts after a
random delay up to ``warmup``; with ``alpha`` a checker starts down.
Every attempt runs under its timeout in its own task: an exception or a
hang fails that check only, and is logged.  Checks with the same
:attr:`Checker.identity` (same kind, endpoint and options) run once and
feed every real server that configured them (keepalived issue #2111).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import logging
import random
import socket
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pykeepalived.core.config.model import CheckerConf, RealServer, VirtualServer
from pykeepalived.core.config.node import Node
from pykeepalived.core.config.schema import (
    BlockSpec,
    Context,
    Invalid,
    IPAddress,
    Kw,
    flag,
    integer,
    ip,
    number,
    parse_block,
    string,
)
from pykeepalived.core.plugin.base import Checker, CheckResult, CheckTarget

log = logging.getLogger("pykeepalived.checkers")

DEFAULT_DELAY_LOOP = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds past a checker's own timeout before its attempt is called hung.
ATTEMPT_GRACE = 0.5

# -- grammar --------------------------------------------------------------------------


@dataclass
class CheckOptions:
    """Options every checker block accepts; None means "not given here"."""

    connect_ip: IPAddress | None = None
    connect_port: int | None = None
    bindto: IPAddress | None = None
    bind_port: int | None = None
    bind_if: str | None = None
    fwmark: int | None = None
    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    delay_loop: float | None = None
    alpha: bool | None = None
    log_all_failures: bool | None = None

    def validate(self) -> None:
        """Raise :class:`Invalid` for a block that cannot work (checker-specific)."""


CONNECTION_KEYWORDS = ("connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "fwmark")


def _port(node: Node, ctx: Context) -> int:
    return integer(0, 65535)(node, ctx)  # type: ignore[no-any-return]


def common_keywords(spec: BlockSpec, *, connection: bool = True) -> None:
    """Add the common checker keywords to ``spec`` (MISC_CHECK has no connection ones)."""
    if connection:
        spec.add(Kw("connect_ip", ip, 1, 1))
        spec.add(Kw("connect_port", _port, 1, 1))
        spec.add(Kw("bindto", ip, 1, 1))
        spec.add(Kw("bind_port", _port, 1, 1))
        spec.add(Kw("bind_if", string, 1, 1))
        spec.add(Kw("fwmark", integer(0, 2**32 - 1), 1, 1))
        spec.add(Kw("connect_timeout", number(0.001, 86400), 1, 1))
    spec.add(Kw("retry", integer(0, 2**31), 1, 1, aliases=("nb_get_retry",)))
    spec.add(Kw("delay_before_retry", number(0, 86400), 1, 1))
    spec.add(Kw("warmup", number(0, 86400), 1, 1))
    spec.add(Kw("delay_loop", number(0.001, 86400), 1, 1))
    spec.add(Kw("alpha", flag, 0, 1))
    spec.add(Kw("log_all_failures", flag, 0, 1))


def checker_kw(
    keyword: str,
    options: type[CheckOptions],
    extra: Callable[[BlockSpec], None] | None = None,
    *,
    connection: bool = True,
    common: bool = True,
) -> Kw:
    """The ``real_server`` keyword of a checker block, ready for ``grammar.add``.

    ``extra(spec)`` adds the checker's own keywords, whose fields must exist
    on ``options``.  The converter builds ``CheckerConf(keyword, place,
    options(...))`` and calls ``options.validate()``; its :class:`Invalid`
    becomes an error at the block's place.
    """
    spec = BlockSpec(keyword)
    if common:
        common_keywords(spec, connection=connection)
    if extra is not None:
        extra(spec)
    names = {f.name for f in dataclasses.fields(options)}

    def conv(node: Node, ctx: Context) -> CheckerConf:
        values = parse_block(node.children, spec, ctx)
        unknown = set(values) - names
        if unknown:  # a plugin bug, not a user error
            raise Invalid(f"internal: {keyword} has no option field(s) {sorted(unknown)}")
        opts = options(**values)
        opts.validate()
        return CheckerConf(keyword, node.place, opts)

    return Kw(keyword, conv, 0, 0, block=spec, needs_block=None, field="checkers", multiple=True)


# -- defaults ---------------------------------------------------------------------------


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def resolve(
    conf: CheckerConf, rs: RealServer, vs: VirtualServer, cls: type[Checker]
) -> tuple[CheckerConf, CheckTarget]:
    """Fill a checker's unset common options from its real/virtual server.

    Returns a new CheckerConf (the parsed one is left alone, for reloads)
    and the endpoint the check connects to.
    """
    ours = isinstance(conf.options, CheckOptions)
    opts = conf.options if ours else CheckOptions()
    fixed = cls.fixed_delay_loop
    delay_loop = fixed or _first(opts.delay_loop, rs.delay_loop, vs.delay_loop, DEFAULT_DELAY_LOOP)
    default_dbr = cls.default_delay_before_retry
    filled = {
        "delay_loop": delay_loop,
        "connect_timeout": _first(
            opts.connect_timeout, rs.connect_timeout, vs.connect_timeout, DEFAULT_CONNECT_TIMEOUT
        ),
        "retry": 0 if fixed else _first(opts.retry, rs.retry, vs.retry, cls.default_retry),
        "delay_before_retry": _first(
            opts.delay_before_retry,
            rs.delay_before_retry,
            vs.delay_before_retry,
            delay_loop if default_dbr is None else default_dbr,
        ),
        # keepalived.conf(5): warmup is enabled by default, up to delay_loop.
        "warmup": 0.0 if fixed else _first(opts.warmup, rs.warmup, vs.warmup, delay_loop),
        "alpha": bool(_first(opts.alpha, rs.alpha, vs.alpha, False)),
        "log_all_failures": bool(opts.log_all_failures),
    }
    if ours and hasattr(opts, "virtualhost") and getattr(opts, "virtualhost", None) is None:
        # HTTP_GET/SSL_GET: the checker's virtualhost, else the real server's, else the VS's.
        filled["virtualhost"] = _first(rs.virtualhost, vs.virtualhost)
    # Options of a third-party shape are passed on untouched.
    resolved = dataclasses.replace(opts, **filled) if ours else conf.options
    port = _first(opts.connect_port, rs.port, vs.port)
    target = CheckTarget(
        address=str(_first(opts.connect_ip, rs.address)),
        port=port,
        protocol=vs.protocol,
        virtual_server=vs.label,
        bind_address=str(opts.bindto) if opts.bindto is not None else None,
        bind_port=opts.bind_port,
        bind_interface=opts.bind_if,
    )
    return CheckerConf(conf.kind, conf.place, resolved), target


def fmt_target(target: CheckTarget) -> str:
    """keepalived's FMT_CHK: ``[192.0.2.21]:tcp:80``."""
    port = target.port if target.port is not None else 0
    return f"[{target.address}]:{target.protocol.lower()}:{port}"


def setting(checker: Checker, name: str, default: Any) -> Any:
    value = getattr(checker.conf.options, name, None)
    return default if value is None else value


# -- our checkers' base class --------------------------------------------------------------


class BaseCheck(Checker):
    """Base of the built-in checkers: keepalived's log wording per checker.

    ``log_name`` is the checker as keepalived names it in "X on service ...
    failed." lines; ``success_line`` is the line logged when the checker
    goes up.
    """

    log_name: ClassVar[str] = "CHECK"

    @property
    def where(self) -> str:
        return fmt_target(self.target)

    def success_line(self, result: CheckResult) -> str:
        return f"{self.log_name} on service {self.where} succeed."

    def success_lines(self, result: CheckResult) -> list[str]:
        return [self.success_line(result)]

    def failure_line(self, result: CheckResult, retries: int) -> str:
        if retries:
            return f"{self.log_name} on service {self.where} failed after {retries} retries."
        return f"{self.log_name} on service {self.where} failed."

    def attempt_failed_line(self, result: CheckResult) -> str:
        """log_all_failures: one failed attempt while the checker is up."""
        detail = f" ({result.message})" if result.message else ""
        return f"{self.log_name} on service {self.where} attempt failed{detail}."


def _success_lines(checker: Checker, result: CheckResult) -> list[str]:
    if isinstance(checker, BaseCheck):
        return checker.success_lines(result)
    return [f"{checker.keyword} on service {fmt_target(checker.target)} succeed."]


def _failure_line(checker: Checker, result: CheckResult, retries: int) -> str:
    if isinstance(checker, BaseCheck):
        return checker.failure_line(result, retries)
    detail = f" ({result.message})" if result.message else ""
    return f"{checker.keyword} on service {fmt_target(checker.target)} failed{detail}."


# -- scheduler -------------------------------------------------------------------------------

#: ``on_change(keys, up, result, first)``: the checker behind ``keys`` changed
#: state (or ran for the first time: ``first``), or reported a new weight.
ChangeCallback = Callable[[list[Hashable], bool, CheckResult, bool], None]


@dataclass(eq=False, slots=True)
class CheckRun:
    """One running check, shared by every subscriber with the same identity.

    The schedule settings are read from the checker once, when the run is
    built; ``task`` is the attempt in flight, if any.
    """

    checker: Checker
    keys: list[Hashable] = field(default_factory=list)
    is_up: bool = True
    has_run: bool = False
    weight: int | None = None
    task: asyncio.Task[CheckResult] | None = None
    attempts: int = 0
    failures: int = 0
    last_duration: float = 0.0
    delay_loop: float = DEFAULT_DELAY_LOOP
    retry: int = 1
    delay_before_retry: float = 1.0
    warmup: float = 0.0
    log_all: bool = False
    #: Seconds an attempt may take before the scheduler calls it hung.
    deadline: float = DEFAULT_CONNECT_TIMEOUT + ATTEMPT_GRACE
    name: str = ""
    retry_it: int = 0
    started: float = 0.0
    timer: asyncio.TimerHandle | None = None
    watchdog: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        checker = self.checker
        self.delay_loop = float(setting(checker, "delay_loop", DEFAULT_DELAY_LOOP))
        self.retry = int(setting(checker, "retry", 1))
        self.delay_before_retry = float(setting(checker, "delay_before_retry", 1.0))
        self.warmup = float(setting(checker, "warmup", 0.0))
        self.log_all = bool(setting(checker, "log_all_failures", False))
        # The checker enforces its own timeout; ours only catches a hang.
        self.deadline = checker.timeout + ATTEMPT_GRACE
        self.name = f"check {checker.keyword} {fmt_target(checker.target)}"


def outcome(checker: Checker, task: asyncio.Future[Any]) -> CheckResult:
    """The result of a finished attempt: exceptions become a failed result."""
    if task.cancelled():
        return CheckResult(False, "cancelled")
    exc = task.exception()
    if exc is not None:
        if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
            return CheckResult(False, str(exc) or type(exc).__name__)
        log.warning(
            "%s on service %s raised %s: %s",
            checker.keyword,
            fmt_target(checker.target),
            type(exc).__name__,
            exc,
        )
        return CheckResult(False, f"{type(exc).__name__}: {exc}")
    result = task.result()
    if not isinstance(result, CheckResult):
        return CheckResult(False, f"check() returned {type(result).__name__}, not CheckResult")
    return result


async def run_attempt(checker: Checker, timeout: float) -> CheckResult:
    """One isolated attempt: exceptions and hangs become a failed result."""
    task = asyncio.ensure_future(checker.check())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        # A check that ignores cancellation must not hold us: collect it later.
        task.add_done_callback(_consume)
        return CheckResult(False, f"timeout after {timeout:g}s")
    return outcome(checker, task)


async def cancel_all(tasks: set[asyncio.Task[None]], limit: float | None = None) -> None:
    """Cancel ``tasks`` and wait for them (at most ``limit`` seconds, if given).

    Cancelled again until done: on Python 3.11 ``asyncio.wait_for`` inside a
    check can swallow a cancellation that races with its inner result
    (CPython gh-86296), and one cancel would then leave the loop running.
    """
    pending: set[Any] = set(tasks)
    loop = asyncio.get_running_loop()
    end = None if limit is None else loop.time() + limit
    while pending:
        for t in pending:
            t.cancel()
        if end is not None and loop.time() >= end:
            for t in pending:  # still refusing: collected whenever they end
                t.add_done_callback(_consume)
            log.warning("%d check task(s) ignored cancellation", len(pending))
            break
        _, pending = await asyncio.wait(pending, timeout=0.2)
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            log.error("check task %s ended with %r", t.get_name(), t.exception())


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class CheckScheduler:
    """Runs checks; reports state changes through ``on_change``.

    ``add(key, checker)`` subscribes ``key`` (any hashable the caller uses
    to find its real server) to a check; identical checks share one run.
    ``suspend(keys)``/``resume(keys)``: a run whose subscribers are all
    suspended skips its attempts (keepalived's ha_suspend).

    Between attempts a run is only a timer in the event loop (no sleeping
    task per check): each attempt is one task, watched by one timer for a
    hang, and its done-callback settles the verdict and sets the next timer,
    delay_loop (or delay_before_retry) after the attempt ended, as
    keepalived's checkers do.  This keeps the cost per attempt to what the
    check itself needs, so 10,000 real servers fit in one event loop.

    Started schedulers freeze the garbage collector's view of the heap
    (``gc.freeze()``): the configuration, its real servers and their checks
    live until the next reload, and without this every full collection
    walks them all, 100-200 ms with 10,000 real servers, during which no
    check starts.  The last scheduler to stop unfreezes, so what a reload
    drops is collected.
    """

    #: Schedulers started and not yet stopped, in this process.
    _running: ClassVar[int] = 0

    def __init__(self, on_change: ChangeCallback, *, rng: random.Random | None = None) -> None:
        self._on_change = on_change
        self._runs: dict[Hashable, CheckRun] = {}
        self._by_key: dict[Hashable, CheckRun] = {}
        self._suspended: set[Hashable] = set()
        self._rng = rng or random.Random()
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Attempts given up as hung that have not ended yet.
        self._abandoned: set[asyncio.Task[CheckResult]] = set()

    @property
    def runs(self) -> list[CheckRun]:
        return list(self._runs.values())

    def add(self, key: Hashable, checker: Checker) -> CheckRun:
        ident = checker.identity
        run = self._runs.get(ident)
        if run is None:
            alpha = bool(setting(checker, "alpha", False))
            run = CheckRun(checker, is_up=not alpha)
            self._runs[ident] = run
            if self._started:
                self._start(run)
        run.keys.append(key)
        self._by_key[key] = run
        return run

    def run_for(self, key: Hashable) -> CheckRun | None:
        return self._by_key.get(key)

    def suspend(self, keys: list[Hashable]) -> None:
        self._suspended.update(keys)

    def resume(self, keys: list[Hashable]) -> None:
        self._suspended.difference_update(keys)

    def _is_suspended(self, run: CheckRun) -> bool:
        if not self._suspended:
            return False
        return bool(run.keys) and all(k in self._suspended for k in run.keys)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self._started:
            CheckScheduler._running += 1
        self._started = True
        gc.freeze()
        for run in self._runs.values():
            if run.timer is None and run.task is None:
                self._start(run)

    def _start(self, run: CheckRun) -> None:
        assert self._loop is not None
        # keepalived.conf(5) warmup: the first check after a random delay up
        # to warmup, which also spreads thousands of checks over the loop.
        delay = self._rng.uniform(0, run.warmup) if run.warmup > 0 else 0.0
        run.timer = self._loop.call_later(delay, self._attempt, run)

    async def stop(self) -> None:
        if self._started:
            CheckScheduler._running -= 1
            if CheckScheduler._running == 0:
                gc.unfreeze()
        self._started = False
        tasks: set[Any] = set(self._abandoned)
        for run in self._runs.values():
            if run.timer is not None:
                run.timer.cancel()
                run.timer = None
            if run.watchdog is not None:
                run.watchdog.cancel()
                run.watchdog = None
            if run.task is not None:
                tasks.add(run.task)
                run.task = None
        self._abandoned.clear()
        if tasks:
            await cancel_all(tasks, limit=2.0)
        for run in self._runs.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.checker.close(), 5.0)

    # -- one attempt: timer -> task -> done callback -> timer --------------------------------

    def _attempt(self, run: CheckRun) -> None:
        loop = self._loop
        assert loop is not None
        run.timer = None
        if self._is_suspended(run):
            run.timer = loop.call_later(run.delay_loop, self._attempt, run)
            return
        run.started = loop.time()
        try:
            task = loop.create_task(run.checker.check(), name=run.name)
        except Exception as exc:  # check() itself raised instead of returning a coroutine
            failed = loop.create_future()
            failed.set_exception(exc)
            self._finish(run, outcome(run.checker, failed))
            return
        run.task = task
        run.watchdog = loop.call_at(run.started + run.deadline, self._hung, run, task)
        task.add_done_callback(functools.partial(self._done, run))

    def _hung(self, run: CheckRun, task: asyncio.Task[CheckResult]) -> None:
        run.watchdog = None
        if run.task is not task:
            return
        run.task = None
        task.cancel()
        # A check that ignores cancellation must not hold us: collect it later.
        self._abandoned.add(task)
        self._finish(run, CheckResult(False, f"timeout after {run.deadline:g}s"))

    def _done(self, run: CheckRun, task: asyncio.Task[CheckResult]) -> None:
        if run.task is not task:  # given up as hung, or the scheduler stopped
            self._abandoned.discard(task)
            _consume(task)
            return
        run.task = None
        if run.watchdog is not None:
            run.watchdog.cancel()
            run.watchdog = None
        self._finish(run, outcome(run.checker, task))

    def _finish(self, run: CheckRun, result: CheckResult) -> None:
        loop = self._loop
        assert loop is not None
        run.last_duration = loop.time() - run.started
        run.attempts += 1
        if not result.ok:
            run.failures += 1
            if run.is_up and run.log_all:
                log.info("%s", _attempt_failed_line(run.checker, result))
        if result.ok or run.retry_it >= run.retry:
            delay = run.delay_loop
            retries, run.retry_it = run.retry_it, 0
            self._settle(run, result, retries)
        else:
            delay = run.delay_before_retry
            run.retry_it += 1
        run.has_run = True
        if self._started:
            run.timer = loop.call_later(delay, self._attempt, run)

    def _settle(self, run: CheckRun, result: CheckResult, retries: int) -> None:
        """A final verdict of one round (after retries): report what changed."""
        first = not run.has_run
        if result.ok:
            if run.is_up and not first and (result.weight is None or result.weight == run.weight):
                return  # the common case: an up checker still up, nothing to say
            if not run.is_up or first:
                for line in _success_lines(run.checker, result):
                    log.info("%s", line)
        elif run.is_up or first:
            log.info("%s", _failure_line(run.checker, result, retries if run.has_run else 0))
        changed = result.ok != run.is_up
        weight_changed = result.ok and result.weight is not None and result.weight != run.weight
        run.is_up = result.ok
        if result.ok and result.weight is not None:
            run.weight = result.weight
        if changed or first or weight_changed:
            try:
                self._on_change(list(run.keys), result.ok, result, first)
            except Exception:  # a bug in the consumer must not end the check loop
                log.exception("checker result handler failed")


def _attempt_failed_line(checker: Checker, result: CheckResult) -> str:
    if isinstance(checker, BaseCheck):
        return checker.attempt_failed_line(result)
    return f"{checker.keyword} on service {fmt_target(checker.target)} attempt failed."


# -- sockets for checkers ------------------------------------------------------------------


def make_socket(target: CheckTarget, kind: int, proto: int = 0, fwmark: int | None = None) -> Any:
    """A non-blocking socket bound as the checker asks (bindto, bind_port, bind_if, fwmark)."""
    # target.address is a normalised address string: only IPv6 has a colon.
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if target.bind_interface:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_BINDTODEVICE, target.bind_interface.encode()
            )
        if fwmark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, fwmark)
        if target.bind_address is not None or target.bind_port:
            if target.bind_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            bind_addr = target.bind_address or ("::" if family == socket.AF_INET6 else "0.0.0.0")
            sock.bind((bind_addr, target.bind_port or 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _writable(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _expired(fut: asyncio.Future[None], timeout: float) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError(f"timeout after {timeout:g}s"))


async def sock_connect(sock: socket.socket, address: tuple[str, int], timeout: float) -> None:
    """Connect the non-blocking ``sock`` to a numeric ``address`` within ``timeout``.

    What ``loop.sock_connect`` under ``asyncio.wait_for`` does, without the
    task, the resolver check and the extra futures those cost per attempt
    (TCP_CHECK of 10,000 real servers spends most of its time here).
    Raises OSError (errno of the failed connect) or TimeoutError.
    """
    try:
        sock.connect(address)
        return
    except (BlockingIOError, InterruptedError):
        pass
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, _writable, fut)
    timer = loop.call_later(timeout, _expired, fut, timeout)
    try:
        await fut
    finally:
        timer.cancel()
        loop.remove_writer(fd)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"Connect call failed {address}")


async def tcp_connect(
    target: CheckTarget, timeout: float, fwmark: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``target`` over TCP with the checker's bind options."""
    if target.port is None:
        raise OSError("no port to connect to (set connect_port)")
    sock = make_socket(target, socket.SOCK_STREAM, fwmark=fwmark)
    try:
        await sock_connect(sock, (target.address, target.port), timeout)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)
