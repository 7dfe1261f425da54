"""Benchmark of real-server checks: pykeepalived's scheduler vs plain asyncio.

Run:  .venv/bin/python bench/checks [--sizes 1000,10000] [--kinds tcp,http]
                                    [--delay-loop 5] [--seconds 10] [--runners pykeepalived,asyncio]

For each size N and kind (TCP_CHECK, HTTP_GET) a server process listens on
N distinct endpoints (127.0.0.1..127.0.0.k, many ports each; TCP: accept and
close, HTTP: a fixed 200 answer), then one measuring process per scenario
runs either pykeepalived's VirtualServerManager (N real servers, the given
delay_loop, keepalived's default warmup of delay_loop, NullBackend: no IPVS)
or a plain-asyncio loop doing the same connect (and GET) per endpoint every
delay_loop.  Reported, over the measuring window (after warmup): checks per
second, CPU per check (user+sys of the measuring process only), peak RSS,
failed attempts, and lateness: how long after it was due an attempt started
(due = end of the previous attempt + delay_loop, as keepalived schedules),
p50/p99/max.  A run keeps up when it does N/delay_loop checks per second
with no failures and lateness in the milliseconds.

keepalived's own checker cannot run here: it needs IPVS in the kernel and
root in a network namespace with ip_vs loaded; its numbers are not shown.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

PORTS_PER_ADDRESS = 200
BASE_PORT = 20000
HTTP_ANSWER = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def endpoints(n: int) -> list[tuple[str, int]]:
    return [
        (f"127.0.0.{1 + i // PORTS_PER_ADDRESS}", BASE_PORT + i % PORTS_PER_ADDRESS)
        for i in range(n)
    ]


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the server process ------------------------------------------------------------------------


class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(HTTP_ANSWER)
            self.transport.close()


class _Tcp(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


async def serve(n: int, kind: str) -> None:
    _raise_nofile()
    loop = asyncio.get_running_loop()
    servers = []
    for addr, port in endpoints(n):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        sock.listen(128)
        servers.append(await loop.create_server(_Http if kind == "http" else _Tcp, sock=sock))
    print("ready", flush=True)
    await asyncio.Event().wait()


# -- the measuring process ---------------------------------------------------------------------


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Stats:
    """Attempts, failures and lateness of the attempts started in the window."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.counting = False
        self.attempts = 0
        self.failures = 0
        self.late: list[float] = []

    def started(self, now: float, prev_end: float | None, prev_ok: bool) -> None:
        if not self.counting:
            return
        self.attempts += 1
        if prev_end is not None and prev_ok:
            self.late.append(now - prev_end - self.delay)

    def ended(self, ok: bool) -> None:
        if self.counting and not ok:
            self.failures += 1

    def summary(self, seconds: float, cpu_s: float) -> dict[str, float]:
        late = sorted(self.late) or [0.0]

        def pct(p: float) -> float:
            return late[min(len(late) - 1, int(p * len(late)))]

        return {
            "rate": self.attempts / seconds,
            "cpu": cpu_s / max(1, self.attempts),
            "rss": rss_kib(),
            "fails": self.failures,
            "p50": pct(0.5),
            "p99": pct(0.99),
            "max": late[-1],
        }


def _watch(checker: Any, stats: Stats) -> None:
    """Wrap one checker's check() to feed ``stats`` (same cost for every runner)."""
    inner = checker.check
    loop = asyncio.get_running_loop()
    prev: list[Any] = [None, True]

    async def check() -> Any:
        stats.started(loop.time(), prev[0], prev[1])
        ok = False
        try:
            result = await inner()
            ok = bool(result.ok)
            return result
        finally:
            prev[0], prev[1] = loop.time(), ok
            stats.ended(ok)

    checker.check = check


async def _window(stats: Stats, settle: float, seconds: float) -> tuple[float, float]:
    await asyncio.sleep(settle)
    stats.counting = True
    c0, t0 = cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    c1, t1 = cpu(), time.monotonic()
    stats.counting = False
    return t1 - t0, c1 - c0


async def measure_pykeepalived(n: int, kind: str, seconds: float, delay: float) -> dict[str, float]:
    from pykeepalived.core.config import load_text
    from pykeepalived.core.lvs.manager import NullBackend, VirtualServerManager
    from pykeepalived.core.plugin.manager import build_registry

    reg = build_registry(autoload=False)
    block = (
        "TCP_CHECK {\n connect_timeout 3\n}"
        if kind == "tcp"
        else "HTTP_GET {\n connect_timeout 3\n url {\n path /\n }\n}"
    )
    reals = "\n".join(f"real_server {a} {p} {{\n{block}\n}}" for a, p in endpoints(n))
    text = f"virtual_server 192.0.2.100 80 {{\n protocol TCP\n delay_loop {delay:g}\n{reals}\n}}\n"
    res = load_text(text, grammar=reg.grammar())
    assert not res.diagnostics.errors, res.diagnostics.errors[:3]
    import logging

    logging.disable(logging.WARNING)  # the NullBackend notice
    m = VirtualServerManager(res.config, reg.checkers, backend=NullBackend())
    stats = Stats(delay)
    for run in m.scheduler.runs:
        _watch(run.checker, stats)
    await m.start()
    wall, cpu_s = await _window(stats, delay + 0.5, seconds)  # past warmup
    await m.stop()
    return stats.summary(wall, cpu_s)


class _Plain:
    """The baseline's check: connect (and GET) with plain asyncio streams."""

    def __init__(self, addr: str, port: int, kind: str) -> None:
        self.addr, self.port, self.kind = addr, port, kind

    async def check(self) -> Any:
        from pykeepalived.core.plugin.base import CheckResult

        loop = asyncio.get_running_loop()
        addr, port, kind = self.addr, self.port, self.kind
        try:
            # numeric address, no resolver: the same work TCP_CHECK does
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (addr, port)), 3)
            except BaseException:
                sock.close()
                raise
            reader, writer = await asyncio.open_connection(sock=sock)
            if kind == "http":
                writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                data = await asyncio.wait_for(reader.read(), 3)
                ok = data.startswith(b"HTTP/1.0 200")
            else:
                ok = True
            writer.close()
        except (OSError, TimeoutError):
            ok = False
        return CheckResult(ok)


async def measure_baseline(n: int, kind: str, seconds: float, delay: float) -> dict[str, float]:
    import random

    stats = Stats(delay)

    async def one(addr: str, port: int) -> None:
        plain = _Plain(addr, port, kind)
        _watch(plain, stats)
        await asyncio.sleep(random.uniform(0, delay))
        while True:
            await plain.check()
            await asyncio.sleep(delay)

    tasks = [asyncio.create_task(one(a, p)) for a, p in endpoints(n)]
    wall, cpu_s = await _window(stats, delay + 0.5, seconds)
    from pykeepalived.core.lvs.checking import cancel_all

    await cancel_all(set(tasks))
    return stats.summary(wall, cpu_s)


def run_one(which: str, n: int, kind: str, seconds: float, delay: float) -> None:
    _raise_nofile()
    fn = measure_pykeepalived if which == "pykeepalived" else measure_baseline
    print(json.dumps(asyncio.run(fn(n, kind, seconds, delay))))


# -- driver -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/checks")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--kinds", default="tcp,http")
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    ap.add_argument("--delay-loop", type=float, default=5.0, help="seconds between checks")
    ap.add_argument("--runners", default="pykeepalived,asyncio")
    ap.add_argument("--serve", nargs=2, metavar=("N", "KIND"), help=argparse.SUPPRESS)
    ap.add_argument("--one", nargs=3, metavar=("WHICH", "N", "KIND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(int(args.serve[0]), args.serve[1]))
        return 0
    if args.one:
        run_one(args.one[0], int(args.one[1]), args.one[2], args.seconds, args.delay_loop)
        return 0
    here = os.path.dirname(os.path.abspath(__file__))
    rows = []
    for kind in args.kinds.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            server = subprocess.Popen(
                [sys.executable, here, "--serve", str(n), kind], stdout=subprocess.PIPE, text=True
            )
            try:
                assert server.stdout is not None
                if server.stdout.readline().strip() != "ready":
                    raise SystemExit("server process failed to start")
                for which in args.runners.split(","):
                    try:
                        out = subprocess.run(
                            [
                                sys.executable,
                                here,
                                "--seconds",
                                str(args.seconds),
                                "--delay-loop",
                                str(args.delay_loop),
                                "--one",
                                which,
                                str(n),
                                kind,
                            ],
                            capture_output=True,
                            text=True,
                            timeout=args.seconds * 4 + args.delay_loop + 120,
                        )
                    except subprocess.TimeoutExpired:
                        print(f"{which} {kind} {n}: timed out", file=sys.stderr)
                        continue
                    if out.returncode:
                        print(out.stderr, file=sys.stderr)
                        raise SystemExit(f"{which} {kind} {n} failed")
                    rows.append((kind, n, which, json.loads(out.stdout.strip().splitlines()[-1])))
            finally:
                server.terminate()
                server.wait()
    check = {"tcp": "TCP_CHECK", "http": "HTTP_GET"}
    print(f"{'check':<10} {'real servers':>12} {'runner':<13} {'checks/s':>9} {'want/s':>7} {'CPU us/check':>13} "
          f"{'peak RSS MiB':>13} {'failed':>7} {'late ms p50/p99/max':>21}")  # fmt: skip
    for kind, n, which, r in rows:
        late = f"{r['p50'] * 1e3:.0f}/{r['p99'] * 1e3:.0f}/{r['max'] * 1e3:.0f}"
        print(
            f"{check[kind]:<10} {n:>12} {which:<13} {r['rate']:>9.0f} {n / args.delay_loop:>7.0f} "
            f"{r['cpu'] * 1e6:>13.1f} {r['rss'] / 1024:>13.1f} {int(r['fails']):>7} {late:>21}"
        )
    print(
        f"\n{os.cpu_count()} CPUs; delay_loop {args.delay_loop:g} s, window {args.seconds:g} s: a run keeps\n"
        "up with the schedule when it does 'want/s' checks per second with no failures and lateness\n"
        "in milliseconds.  A lower rate or growing lateness is the CPU ceiling of one event loop\n"
        "(failures there are checks that timed out in an overloaded loop).  keepalived's default\n"
        "delay_loop of 60 s needs N/60 checks per second."
    )
    print(
        "keepalived's checker is not measured: it needs IPVS (ip_vs kernel module) to run its checkers."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
