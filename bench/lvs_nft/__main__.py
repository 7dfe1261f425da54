"""Benchmark of the nftables virtual-server backend (core/lvs/nft.py).

Run as root from the repo:  .venv/bin/python bench/lvs_nft [--sizes 10,1000]
                                   [--repeat 5] [--seconds 3] [--workers 8]

1. Rule updates: in a fresh namespace, :class:`NftBackend` programs one
   virtual server with N real servers (NAT, wlc -> weighted random), then
   applies changes as the daemon would after a check result: one weight
   changed, one real server out, the same back in, and a new backend taking
   the table over (what a daemon started after a crash does: it reads the
   leftover table back, then replaces its contents in one transaction,
   keeping the hook chains).  Each is timed from ``apply``
   to nft's exit (one ``nft -f`` transaction, a subprocess), median of
   --repeat; the number of nft statements sent is shown too.
2. Connections/s: a lab (client, director, 3 real servers on 198.51.100.0/24
   routed via the director, as LVS-NAT wants) and --workers concurrent
   clients opening, reading one line from and closing TCP connections for
   --seconds: through the VIP (DNAT by nftables + conntrack on the director)
   and, for comparison, routed straight to one real server through the
   same director (forwarding without NAT).

Not part of the test suite (tests/test_lvs_nft.py asserts behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

VIP = "192.0.2.100"
PORT = 80
RS_PORT = 8080

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    name = sys.argv[1].encode() + b"\\n"
    async def serve(r, w):
        w.write(name)
        try:
            await w.drain()
        except OSError:
            pass
        w.close()
    async def main():
        srv = await asyncio.start_server(serve, "0.0.0.0", int(sys.argv[2]), backlog=1024)
        print("ready", flush=True)
        await srv.serve_forever()
    asyncio.run(main())
    """
)

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    host, port, seconds, workers = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    done = errors = 0
    async def worker(stop):
        global done, errors
        while time.monotonic() < stop:
            try:
                r, w = await asyncio.open_connection(host, port)
                await r.readline()
                w.close()
                done += 1
            except OSError:
                errors += 1
    async def main():
        stop = time.monotonic() + seconds
        t0 = time.monotonic()
        await asyncio.gather(*(worker(stop) for _ in range(workers)))
        print(json.dumps({"done": done, "errors": errors, "seconds": time.monotonic() - t0}))
    asyncio.run(main())
    """
)


# -- 1. update times (runs inside the director namespace) ----------------------------------------


def _service(n: int, weights: dict[int, int] | None = None, skip: int | None = None) -> object:
    from pykeepalived.core.lvs.manager import IpvsDest, IpvsService

    base = int(ipaddress.ip_address("198.51.100.0"))
    dests = [
        IpvsDest(
            ipaddress.ip_address(base + 10 + i // 50), RS_PORT + i % 50, (weights or {}).get(i, 1)
        )
        for i in range(n)
        if i != skip
    ]
    return IpvsService("TCP", ipaddress.ip_address(VIP), PORT, scheduler="wlc", destinations=dests)


async def _updates(sizes: list[int], repeat: int) -> dict[str, dict[str, tuple[float, int]]]:
    import logging

    from pykeepalived.core.lvs.nft import NftBackend

    logging.disable(logging.WARNING)
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for n in sizes:
        rows: dict[str, list[tuple[float, int]]] = {}

        async def timed(
            what: str,
            backend: NftBackend,
            svc: object,
            rows: dict[str, list[tuple[float, int]]] = rows,
        ) -> None:
            t0 = time.perf_counter()
            result = await backend.apply([svc])  # type: ignore[list-item]
            rows.setdefault(what, []).append((time.perf_counter() - t0, result.lines))

        for _ in range(repeat):
            backend = NftBackend()
            await timed("install (first apply)", backend, _service(n))
            await timed("one weight changed", backend, _service(n, {n // 2: 5}))
            await timed("one real server out", backend, _service(n, {n // 2: 5}, skip=n // 3))
            await timed("the same back in", backend, _service(n, {n // 2: 5}))
            fresh = NftBackend()  # a restart after a crash: takes the table over
            await timed("take-over (restart)", fresh, _service(n, {n // 2: 5}))
            await fresh.stop()
        out[str(n)] = {k: (statistics.median(t for t, _ in v), v[0][1]) for k, v in rows.items()}
    return out


# -- 2. the lab ---------------------------------------------------------------------------------


def _lab_run(args: argparse.Namespace) -> tuple[dict[str, object], dict[str, object]]:
    from pykeepalived.testing.lab import Lab

    work = Path(tempfile.mkdtemp(prefix="pka-bench-nft-"))
    (work / "server.py").write_text(SERVER)
    (work / "client.py").write_text(CLIENT)
    with Lab(0) as lab:
        d = lab.add_host("director")
        client = lab.add_host("client")
        rs = [lab.add_host(f"rs{i}") for i in (1, 2, 3)]
        d.ip("addr", "add", "198.51.100.1/24", "dev", "eth0")
        d.ip("addr", "add", f"{VIP}/32", "dev", "eth0")
        d.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        for c in ("all", "default", "eth0"):
            d.run(["sysctl", "-q", "-w", f"net.ipv4.conf.{c}.send_redirects=0"])
        # For the no-NAT baseline the client routes the RS subnet via the director.
        client.ip("route", "add", "198.51.100.0/24", "via", d.ip4)
        for i, h in enumerate(rs, start=1):
            h.ip("addr", "del", f"{h.ip4}/24", "dev", "eth0")
            h.ip("addr", "add", f"198.51.100.{10 + i}/24", "dev", "eth0")
            h.ip("route", "add", "default", "via", "198.51.100.1")
            p = h.popen(
                [sys.executable, str(work / "server.py"), f"rs{i}", str(RS_PORT)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        updates = json.loads(
            d.run(
                [
                    sys.executable,
                    str(Path(__file__).parent),
                    "--inner-updates",
                    "--sizes",
                    args.sizes,
                    "--repeat",
                    str(args.repeat),
                ],
                timeout=600,
            ).stdout
        )
        # Serve the VIP with the three lab real servers (weights 1:2:3).
        table = json.dumps([[f"198.51.100.{10 + i}", i] for i in (1, 2, 3)])
        d.run([sys.executable, str(Path(__file__).parent), "--inner-serve", table], timeout=60)
        rates: dict[str, object] = {}
        for label, host, port in (
            ("through the VIP (nftables DNAT)", VIP, PORT),
            ("straight to rs1 via the director", "198.51.100.11", RS_PORT),
        ):
            out = client.run(
                [
                    sys.executable,
                    str(work / "client.py"),
                    host,
                    str(port),
                    str(args.seconds),
                    str(args.workers),
                ],
                timeout=args.seconds + 60,
            ).stdout
            rates[label] = json.loads(out)
    return updates, rates


async def _serve(table: list[list[object]]) -> None:
    from pykeepalived.core.lvs.manager import IpvsDest, IpvsService
    from pykeepalived.core.lvs.nft import NftBackend

    dests = [IpvsDest(ipaddress.ip_address(a), RS_PORT, int(w)) for a, w in table]  # type: ignore[call-overload]
    await NftBackend().apply(
        [IpvsService("TCP", ipaddress.ip_address(VIP), PORT, scheduler="wrr", destinations=dests)]
    )  # left in place: the namespace goes with the lab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,1000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--inner-updates", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inner-serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.inner_updates:
        print(json.dumps(asyncio.run(_updates(sizes, args.repeat))))
        return 0
    if args.inner_serve:
        asyncio.run(_serve(json.loads(args.inner_serve)))
        return 0
    updates, rates = _lab_run(args)
    print(
        f"\nnftables backend: rule update time (median of {args.repeat}, nft subprocess included)"
    )
    print(f"{'real servers':>12}  {'change':<24} {'ms':>9} {'statements':>11}")
    for n, rows in updates.items():
        for what, (seconds, lines) in rows.items():
            print(f"{n:>12}  {what:<24} {seconds * 1000:>9.1f} {lines:>11}")
    print(
        f"\nconnections/s ({args.workers} concurrent clients, {args.seconds:g} s, connect+read+close)"
    )
    print(f"{'path':<36} {'conn/s':>9} {'errors':>7}")
    for label, r in rates.items():
        assert isinstance(r, dict)
        print(f"{label:<36} {r['done'] / r['seconds']:>9.0f} {r['errors']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
