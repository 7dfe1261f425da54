#!/usr/bin/env python3
"""Regenerate the golden VRRP fixtures in this directory from a real keepalived.

Needs root, ``ip``, ``keepalived`` and ``tshark``.  For every scenario below it

* creates two network namespaces (``pkatest-pkt-<pid>-<n>a`` / ``...b``) joined
  by a veth pair (``veth0`` 192.0.2.1/24 + 2001:db8::1/64 in ``a``, ``veth1``
  192.0.2.2/24 + 2001:db8::2/64 in ``b``),
* runs ``keepalived -n -l -D -P`` as MASTER inside ``a`` with a generated
  keepalived.conf,
* captures ``veth0`` with tshark for a few seconds, then stops keepalived with
  SIGTERM (so the priority-0 "resign" adverts are captured as well),
* writes ``<scenario>.json`` holding the keepalived.conf text, the parameters
  the tests feed to the encoder, and every captured VRRP/AH IP datagram as hex.

Namespaces and processes are always removed, also on failure.  Only
documentation prefixes (192.0.2.0/24, 2001:db8::/32) are used and no host
interface is touched.

Usage: ``sudo .venv/bin/python tests/data/vrrp/capture.py [scenario ...]``
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PREFIX = f"pkatest-pkt-{os.getpid()}"

V4_LOCAL = "192.0.2.1"
V4_PEER = "192.0.2.2"
V4_PEER_ABSENT = "192.0.2.3"  # static neighbour entry, no host behind it
V6_LOCAL = "2001:db8::1"
V6_PEER = "2001:db8::2"

# name -> parameters.  "family" 4/6, "addresses" in keepalived order.
SCENARIOS: dict[str, dict[str, Any]] = {
    "v2_noauth": {
        "version": 2,
        "vrid": 51,
        "advert_int": "1",
        "addresses": ["192.0.2.100", "192.0.2.101"],
    },
    "v2_pass": {
        "version": 2,
        "vrid": 52,
        "advert_int": "1",
        "auth_type": "PASS",
        # longer than 8 characters: keepalived truncates to "secretpa"
        "auth_pass": "secretpassword",
        "addresses": ["192.0.2.102"],
    },
    "v2_pass_short": {
        "version": 2,
        "vrid": 53,
        "advert_int": "2",
        "auth_type": "PASS",
        "auth_pass": "abc",
        "addresses": ["192.0.2.103", "192.0.2.104", "192.0.2.105"],
    },
    "v2_ah": {
        "version": 2,
        "vrid": 54,
        "advert_int": "1",
        "auth_type": "AH",
        "auth_pass": "ahsecret",
        "addresses": ["192.0.2.106", "192.0.2.107"],
    },
    "v2_ah_unicast": {
        "version": 2,
        "vrid": 55,
        "advert_int": "1",
        "auth_type": "AH",
        "auth_pass": "unisecretXYZ",
        "addresses": ["192.0.2.108"],
        "unicast_peers": [V4_PEER, V4_PEER_ABSENT],
    },
    "v2_unicast_pass": {
        "version": 2,
        "vrid": 56,
        "advert_int": "1",
        "auth_type": "PASS",
        "auth_pass": "uni",
        "addresses": ["192.0.2.109"],
        "unicast_peers": [V4_PEER, V4_PEER_ABSENT],
    },
    "v3_ipv4": {
        "version": 3,
        "vrid": 61,
        "advert_int": "1",
        "addresses": ["192.0.2.110", "192.0.2.111", "192.0.2.112"],
    },
    "v3_ipv4_half_second": {
        "version": 3,
        "vrid": 62,
        "advert_int": "0.5",
        "addresses": ["192.0.2.113"],
    },
    "v3_ipv4_unicast": {
        "version": 3,
        "vrid": 63,
        "advert_int": "1",
        "addresses": ["192.0.2.114", "192.0.2.115"],
        "unicast_peers": [V4_PEER, V4_PEER_ABSENT],
    },
    "v3_ipv6": {
        "version": 3,
        "vrid": 71,
        "advert_int": "1",
        "addresses": ["2001:db8::100", "2001:db8::101"],
    },
    "v3_ipv6_unicast": {
        "version": 3,
        "vrid": 72,
        "advert_int": "1",
        "addresses": ["2001:db8::102"],
        "unicast_peers": [V6_PEER],
    },
    "v2_ipv6": {
        "version": 2,
        "vrid": 73,
        "advert_int": "1",
        "addresses": ["2001:db8::103"],
    },
}


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def keepalived_conf(p: dict[str, Any]) -> str:
    v6 = ":" in p["addresses"][0]
    lines = [
        "global_defs {",
        "    router_id pkatest",
        "}",
        "vrrp_instance VI_1 {",
        "    state MASTER",
        "    interface veth0",
        f"    virtual_router_id {p['vrid']}",
        "    priority 100",
        f"    advert_int {p['advert_int']}",
        f"    version {p['version']}",
    ]
    if p.get("auth_type"):
        lines += [
            "    authentication {",
            f"        auth_type {p['auth_type']}",
            f"        auth_pass {p['auth_pass']}",
            "    }",
        ]
    if p.get("unicast_peers"):
        lines.append(f"    unicast_src_ip {V6_LOCAL if v6 else V4_LOCAL}")
        lines.append("    unicast_peer {")
        lines += [f"        {peer}" for peer in p["unicast_peers"]]
        lines.append("    }")
    lines.append("    virtual_ipaddress {")
    lines += [f"        {a}/{128 if v6 else 32}" for a in p["addresses"]]
    lines += ["    }", "}", ""]
    return "\n".join(lines)


def read_pcap(path: Path) -> list[bytes]:
    """Return the IP datagrams (Ethernet stripped) of a classic pcap file."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise RuntimeError(f"unexpected link type {linktype}")
    out: list[bytes] = []
    off = 24
    while off + 16 <= len(data):
        _sec, _frac, incl, _orig = struct.unpack(endian + "IIII", data[off : off + 16])
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype in (0x0800, 0x86DD):
            out.append(frame[14:])
    return out


def describe(ip: bytes) -> dict[str, Any] | None:
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 0x0F) * 4
        proto = ip[9]
        if proto not in (112, 51):
            return None
        import ipaddress

        return {
            "family": 4,
            "src": str(ipaddress.IPv4Address(ip[12:16])),
            "dst": str(ipaddress.IPv4Address(ip[16:20])),
            "ttl": ip[8],
            "proto": proto,
            "ip_hex": ip.hex(),
            "payload_hex": ip[ihl + (24 if proto == 51 else 0) :].hex(),
        }
    if ip[0] >> 4 == 6:
        if ip[6] != 112:
            return None
        import ipaddress

        return {
            "family": 6,
            "src": str(ipaddress.IPv6Address(ip[8:24])),
            "dst": str(ipaddress.IPv6Address(ip[24:40])),
            "ttl": ip[7],
            "proto": 112,
            "ip_hex": ip.hex(),
            "payload_hex": ip[40:].hex(),
        }
    return None


def capture(index: int, name: str, params: dict[str, Any]) -> dict[str, Any]:
    ns_a = f"{PREFIX}-{index}a"
    ns_b = f"{PREFIX}-{index}b"
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="pkatest-pkt-") as tmp_s:
        tmp = Path(tmp_s)
        conf = keepalived_conf(params)
        (tmp / "keepalived.conf").write_text(conf)
        pcap = tmp / "cap.pcap"
        try:
            run("ip", "netns", "add", ns_a)
            run("ip", "netns", "add", ns_b)
            for ns in (ns_a, ns_b):
                for key in ("all", "default"):
                    run(
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "sysctl",
                        "-qw",
                        f"net.ipv6.conf.{key}.accept_dad=0",
                    )
            run(
                "ip",
                "-n",
                ns_a,
                "link",
                "add",
                "veth0",
                "type",
                "veth",
                "peer",
                "name",
                "veth1",
                "netns",
                ns_b,
            )
            run("ip", "-n", ns_a, "addr", "add", f"{V4_LOCAL}/24", "dev", "veth0")
            run("ip", "-n", ns_a, "addr", "add", f"{V6_LOCAL}/64", "dev", "veth0", "nodad")
            run("ip", "-n", ns_b, "addr", "add", f"{V4_PEER}/24", "dev", "veth1")
            run("ip", "-n", ns_b, "addr", "add", f"{V6_PEER}/64", "dev", "veth1", "nodad")
            for ns, dev in ((ns_a, "veth0"), (ns_b, "veth1")):
                run("ip", "-n", ns, "link", "set", "lo", "up")
                run("ip", "-n", ns, "link", "set", dev, "up")
            run(
                "ip",
                "-n",
                ns_a,
                "neigh",
                "add",
                V4_PEER_ABSENT,
                "lladdr",
                "02:00:00:00:00:03",
                "dev",
                "veth0",
                "nud",
                "permanent",
            )
            time.sleep(1.0)  # link-local addresses

            tshark = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns_a,
                    "tshark",
                    "-q",
                    "-i",
                    "veth0",
                    "-F",
                    "pcap",
                    "-w",
                    str(pcap),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            procs.append(tshark)
            assert tshark.stderr is not None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                line = tshark.stderr.readline().decode(errors="replace")
                if "Capturing on" in line or not line:
                    break
            time.sleep(0.5)

            log = open(tmp / "keepalived.log", "wb")  # noqa: SIM115
            ka = subprocess.Popen(
                [
                    "ip", "netns", "exec", ns_a, "keepalived", "-n", "-l", "-D", "-P",
                    "-f", str(tmp / "keepalived.conf"),
                    "-p", str(tmp / "keepalived.pid"),
                    "-r", str(tmp / "vrrp.pid"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            procs.append(ka)
            time.sleep(7.0)
            ka.send_signal(signal.SIGTERM)
            ka.wait(timeout=15)
            time.sleep(1.0)
            tshark.send_signal(signal.SIGINT)
            tshark.wait(timeout=15)
            log.close()
            packets = [d for d in (describe(ip) for ip in read_pcap(pcap)) if d]
            if not packets:
                sys.stderr.write((tmp / "keepalived.log").read_text())
                raise RuntimeError(f"{name}: no VRRP packets captured")
            return {
                "name": name,
                "keepalived_version": run(
                    "keepalived", "--version", check=False
                ).stderr.splitlines()[0],
                "keepalived_conf": conf,
                "params": params,
                "local_v4": V4_LOCAL,
                "packets": packets,
            }
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait()
            run("ip", "netns", "del", ns_a, check=False)
            run("ip", "netns", "del", ns_b, check=False)


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {n: pool.submit(capture, i, n, SCENARIOS[n]) for i, n in enumerate(names)}
        for n, fut in futures.items():
            result = fut.result()
            (HERE / f"{n}.json").write_text(json.dumps(result, indent=1) + "\n")
            print(f"{n}: {len(result['packets'])} packets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
