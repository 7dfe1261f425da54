"""What split-brain probing costs the VRRP loop, and what a nft drop-rule update costs.

    .venv/bin/python bench/splitbrain [--probes N]

Runs inside a throwaway lab namespace (as root): times Prober.probe() for an
IPv4 VIP (ARP probe) and an IPv6 VIP (DAD NS) on the lab's eth0, and
AcceptFirewall.update() adding and deleting one VIP's elements over
nfnetlink, and prints microseconds per call (median of 5 rounds).  These run
on the VRRP loop: the figures say how long an advert can wait behind one
probe round or one transition's firewall update.
"""

from __future__ import annotations

import argparse
import sys

from pykeepalived.testing.lab import Lab

INNER = r"""
import asyncio, statistics, sys, time
from pykeepalived.core.vrrp.splitbrain import Prober
from pykeepalived.core.vrrp.nft_accept import AcceptFirewall, element
n = int(sys.argv[1])
loop = asyncio.new_event_loop()
p = Prober("eth0", loop)
mac = bytes.fromhex("02aabbccddee")
def per_call(fn):
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter_ns() - t0) / n / 1000)
    return statistics.median(rounds)
print(f"ARP probe (IPv4 VIP)       {per_call(lambda: p.probe('192.0.2.100', mac)):8.1f} us")
print(f"DAD NS probe (IPv6 VIP)    {per_call(lambda: p.probe('2001:db8::100', mac)):8.1f} us")
fw = AcceptFirewall(lambda dev: 2)
fw.start([4, 6])
els = [element("192.0.2.100", None), element("2001:db8::100", None), element("fe80::100", 2)]
def toggle():
    fw.update(True, els, "bench")
    fw.update(False, els, "bench")
print(f"drop rules add+delete (3)  {per_call(toggle):8.1f} us")
fw.close()
p.close()
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=5000)
    args = ap.parse_args()
    with Lab(1) as lab:
        h = lab[0]
        out = h.run([sys.executable, "-c", INNER, str(args.probes)])
        print(out.stdout, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
