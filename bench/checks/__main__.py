"""Benchmark of real-server checks: pykeepalived's scheduler vs plain asyncio.

Run:  .venv/bin/python bench/checks [--sizes 1000,10000] [--kinds tcp,http] [--seconds 5]

For each size N and kind (TCP_CHECK, HTTP_GET) a server process listens on
N distinct endpoints (127.0.0.1..127.0.0.k, many ports each; TCP: accept and
close, HTTP: a fixed 200 answer), then one measuring process per scenario
runs either pykeepalived's VirtualServerManager (N real servers, delay_loop
1 s, warmup spread, NullBackend: no IPVS) or a plain-asyncio loop doing the
same connect (and GET) per endpoint per second.  Reported: checks/second in
the measuring window, CPU seconds per check (user+sys of the measuring
process only) and peak RSS.

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


async def measure_pykeepalived(n: int, kind: str, seconds: float) -> dict[str, float]:
    from pykeepalived.core.config import load_text
    from pykeepalived.core.lvs import NullBackend, VirtualServerManager
    from pykeepalived.core.plugins import build_registry

    reg = build_registry(autoload=False)
    block = (
        "TCP_CHECK {\n connect_timeout 3\n}"
        if kind == "tcp"
        else "HTTP_GET {\n connect_timeout 3\n url {\n path /\n }\n}"
    )
    reals = "\n".join(f"real_server {a} {p} {{\n{block}\n}}" for a, p in endpoints(n))
    text = (
        f"virtual_server 192.0.2.100 80 {{\n protocol TCP\n delay_loop 1\n warmup 1\n{reals}\n}}\n"
    )
    res = load_text(text, grammar=reg.grammar())
    assert not res.diagnostics.errors, res.diagnostics.errors[:3]
    import logging

    logging.disable(logging.WARNING)  # the NullBackend notice
    m = VirtualServerManager(res.config, reg.checkers, backend=NullBackend())
    await m.start()
    await asyncio.sleep(1.5)  # past warmup
    a0, c0, t0 = sum(r.attempts for r in m.scheduler.runs), cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    a1, c1, t1 = sum(r.attempts for r in m.scheduler.runs), cpu(), time.monotonic()
    fails = sum(r.failures for r in m.scheduler.runs)
    await m.stop()
    return {
        "rate": (a1 - a0) / (t1 - t0),
        "cpu": (c1 - c0) / max(1, a1 - a0),
        "rss": rss_kib(),
        "fails": fails,
    }


async def measure_baseline(n: int, kind: str, seconds: float) -> dict[str, float]:
    import random

    count = [0, 0]
    loop = asyncio.get_running_loop()

    async def one(addr: str, port: int) -> None:
        await asyncio.sleep(random.uniform(0, 1))
        while True:
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
            count[0] += 1
            count[1] += not ok
            await asyncio.sleep(1)

    tasks = [asyncio.create_task(one(a, p)) for a, p in endpoints(n)]
    await asyncio.sleep(1.5)
    a0, c0, t0 = count[0], cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    a1, c1, t1 = count[0], cpu(), time.monotonic()
    from pykeepalived.core.checking import cancel_all

    await cancel_all(set(tasks))
    return {
        "rate": (a1 - a0) / (t1 - t0),
        "cpu": (c1 - c0) / max(1, a1 - a0),
        "rss": rss_kib(),
        "fails": count[1],
    }


def run_one(which: str, n: int, kind: str, seconds: float) -> None:
    _raise_nofile()
    fn = measure_pykeepalived if which == "pykeepalived" else measure_baseline
    print(json.dumps(asyncio.run(fn(n, kind, seconds))))


# -- driver -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/checks")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--kinds", default="tcp,http")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--serve", nargs=2, metavar=("N", "KIND"), help=argparse.SUPPRESS)
    ap.add_argument("--one", nargs=3, metavar=("WHICH", "N", "KIND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(int(args.serve[0]), args.serve[1]))
        return 0
    if args.one:
        run_one(args.one[0], int(args.one[1]), args.one[2], args.seconds)
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
                for which in ("pykeepalived", "asyncio"):
                    try:
                        out = subprocess.run(
                            [
                                sys.executable,
                                here,
                                "--seconds",
                                str(args.seconds),
                                "--one",
                                which,
                                str(n),
                                kind,
                            ],
                            capture_output=True,
                            text=True,
                            timeout=args.seconds * 4 + 120,
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
          f"{'peak RSS MiB':>13} {'failed':>7}")  # fmt: skip
    for kind, n, which, r in rows:
        print(
            f"{check[kind]:<10} {n:>12} {which:<13} {r['rate']:>9.0f} {n:>7} {r['cpu'] * 1e6:>13.1f} "
            f"{r['rss'] / 1024:>13.1f} {int(r['fails']):>7}"
        )
    print(
        f"\n{os.cpu_count()} CPUs; delay_loop 1 s, so 'want/s' checks per second keep up with the schedule;\n"
        "a lower rate is the CPU ceiling of one event loop (failures there are checks that timed out\n"
        "in an overloaded loop).  keepalived's default delay_loop of 60 s needs N/60 checks per second."
    )
    print(
        "keepalived's checker is not measured: it needs IPVS (ip_vs kernel module) to run its checkers."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
