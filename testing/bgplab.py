"""The BGP lab of tests/test_bgp.py and bench/bgp (docs/scale-out.md).

::

      client 198.51.100.2
        |  (veth rt0 / cl0, 198.51.100.0/24)
      router 192.0.2.11 + 198.51.100.1   BIRD 2, AS 65000, kernel ECMP
        |  (lab bridge, 192.0.2.0/24)
      +-----------------+
      n1 192.0.2.12      n2 192.0.2.13    pykeepalived + its BGP speaker
      AS 65001           AS 65002         (ExaBGP it starts, or its own BIRD)

The router learns the VIPs (203.0.113.0/24) from the nodes and installs
them in its kernel with ``merge paths`` (ECMP), so the client's traffic
follows the BGP table.  Every node runs a tiny TCP server on port 8080 that
answers its name, used for traffic checks and as the real server of the
nodes' TCP_CHECK.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pykeepalived.testing.daemons import PyNode, global_defs, instance
from pykeepalived.testing.lab import Host, Lab, wait_until

ROUTER_AS = 65000
CLIENT_IP = "198.51.100.2"
ROUTER_CLIENT_IP = "198.51.100.1"
#: BGP hold time (s) on every session: short, so a frozen node is noticed fast.
HOLD = 3
PORT = 8080
VIP_MASTER = "203.0.113.10"
VIP_ANY = "203.0.113.20"

WHO_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(64)
while True:
    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
"""

WHO_CLIENT = r"""
import socket, sys
seen = []
for i in range(int(sys.argv[3])):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
        seen.append(c.recv(64).decode() or "-"); c.close()
    except OSError:
        seen.append("-")
print(" ".join(seen))
"""


def router_bird_conf(peers: dict[str, tuple[str, int]]) -> str:
    lines = [
        "router id 192.0.2.11;",
        "protocol device { scan time 1; }",
        "protocol kernel { ipv4 { export all; }; merge paths on; }",
    ]
    for name, (addr, asn) in peers.items():
        lines.append(
            f"protocol bgp {name} {{ local 192.0.2.11 as {ROUTER_AS}; "
            f"neighbor {addr} as {asn}; hold time {HOLD}; keepalive time 1; "
            "connect retry time 1; error wait time 1, 2; "
            "ipv4 { import all; export none; }; }"
        )
    return "\n".join(lines) + "\n"


def node_bird_conf(host: Host, asn: int, include: Path) -> str:
    """A node's own BIRD (backend bird): pykeepalived only writes ``include``."""
    return (
        f"router id {host.ip4};\n"
        "protocol device { scan time 1; }\n"
        "protocol static pka4 {\n  ipv4;\n"
        f'  include "{include}";\n'
        "}\n"
        f"protocol bgp up {{ local {host.ip4} as {asn}; neighbor 192.0.2.11 as {ROUTER_AS}; "
        f"hold time {HOLD}; keepalive time 1; connect retry time 1; error wait time 1, 2; "
        'ipv4 { import none; export where proto = "pka4"; }; }\n'
    )


@dataclass
class Bird:
    host: Host
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.dir / "bird.ctl"

    def start(self, conf: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "bird.conf").write_text(conf)
        log = open(self.dir / "bird.log", "ab")  # noqa: SIM115 - child keeps it
        self.proc = self.host.popen(
            ["bird", "-f", "-c", str(self.dir / "bird.conf"), "-s", str(self.socket)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.socket.exists, 10, message=f"bird in {self.host.name} did not start")

    def birdc(self, *args: str) -> str:
        out = subprocess.run(
            ["birdc", "-s", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout

    def next_hops(self, prefix: str) -> set[str]:
        """Every path the router knows for ``prefix`` (``birdc show route``)."""
        return set(re.findall(r"via (\S+)", self.birdc("show route", prefix)))

    def primary(self, prefix: str) -> set[str]:
        """Next hops of the best path(s): what the kernel forwards to (ECMP)."""
        out = self.host.run(["ip", "-4", "route", "show", prefix], check=False).stdout
        return set(re.findall(r"via (\S+)", out))

    def established(self, protocol: str) -> bool:
        return "Established" in self.birdc("show protocols", protocol)


@dataclass
class Node:
    host: Host
    asn: int
    py: PyNode
    who: subprocess.Popen[bytes] | None = None
    bird: Bird | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def start_who(self) -> None:
        self.who = self.host.popen(
            [sys.executable, "-c", WHO_SERVER, self.host.name, str(PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop_who(self) -> None:
        if self.who is not None:
            self.who.kill()
            self.who.wait(5)
            self.who = None


def speaker_block(node: Node, backend: str) -> str:
    h = node.host
    if backend == "exabgp":
        return (
            "bgp_speaker EDGE {\n    backend exabgp\n"
            f"    local_as {node.asn}\n    local_address {h.ip4}\n"
            f"    neighbor 192.0.2.11 65000\n    hold_time {HOLD}\n}}\n"
        )
    assert node.bird is not None
    return (
        "bgp_speaker EDGE {\n    backend bird\n"
        f"    local_as {node.asn}\n    include_file {node.bird.dir / 'pka4.conf'}\n"
        f"    control_socket {node.bird.socket}\n}}\n"
    )


def node_config(node: Node, backend: str, priority: int, web_extra: str = "") -> str:
    """The node's keepalived.conf; ``web_extra``: more lines for ``bgp_announce WEB``."""
    h = node.host
    return (
        global_defs(h.name)
        + instance("VI_1", priority=priority, vips=(f"{VIP_MASTER}/32 dev lo",))
        + f"""
virtual_server {VIP_ANY} 8080 {{
    delay_loop 1
    protocol TCP
    real_server {h.ip4} 8080 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""
        + speaker_block(node, backend)
        + f"""
bgp_announce WEB {{
    prefix {VIP_MASTER}/32
    track_instance VI_1
    community 65000:100
{web_extra}
}}
bgp_announce ANY {{
    prefix {VIP_ANY}/32
    track_virtual_server {VIP_ANY} 8080
    mode anycast
}}
"""
    )


class BgpLab:
    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.router = lab.add_host("router")
        self.nodes: list[Node] = []
        for i, name in enumerate(("n1", "n2")):
            host = lab.add_host(name)
            # Replies to the client go back through the router.
            host.ip("route", "add", "198.51.100.0/24", "via", self.router.ip4)
            self.nodes.append(Node(host, 65001 + i, PyNode(host, workdir, f"pyk-{name}")))
        self.client = lab.add_host("client")
        # The client sits behind the router, not on the lab segment.
        self.client.ip("addr", "flush", "dev", "eth0")
        self.client.ip("link", "set", "eth0", "down")
        self.router.ip(
            "link", "add", "cl0", "type", "veth", "peer", "name", "rt0", "netns", self.client.netns
        )
        self.router.ip("addr", "add", f"{ROUTER_CLIENT_IP}/24", "dev", "cl0")
        self.router.ip("link", "set", "cl0", "up")
        self.client.ip("addr", "add", f"{CLIENT_IP}/24", "dev", "rt0")
        self.client.ip("link", "set", "rt0", "up")
        self.client.ip("route", "add", "default", "via", ROUTER_CLIENT_IP)
        self.router.run(
            [
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
                # ECMP by the 5-tuple, so one client's connections spread.
                "net.ipv4.fib_multipath_hash_policy=1",
            ]
        )
        self.bird = Bird(self.router, workdir / "router-bird")
        self.bird.start(router_bird_conf({n.host.name: (n.host.ip4, n.asn) for n in self.nodes}))

    def who(self, vip: str, count: int = 1) -> list[str]:
        out = self.client.run(
            [sys.executable, "-c", WHO_CLIENT, vip, str(PORT), str(count)],
            check=False,
            timeout=count * 2 + 10,
        ).stdout
        return out.split()

    def node_ip(self, name: str) -> str:
        return next(n.host.ip4 for n in self.nodes if n.host.name == name)

    def wait_hops(self, prefix: str, want: set[str], timeout: float = 15.0) -> float:
        """Seconds until the router's paths for ``prefix`` are exactly ``want``."""
        t0 = time.monotonic()
        wait_until(
            lambda: self.bird.next_hops(prefix) == want,
            timeout,
            interval=0.02,
            message=f"{prefix}: router has {self.bird.next_hops(prefix)}, want {want}",
        )
        return time.monotonic() - t0

    def start_nodes(self, backend: str, web_extra: str = "") -> None:
        """Start both nodes (n1 priority 200, n2 100) with ``backend`` speakers."""
        for node, prio in zip(self.nodes, (200, 100), strict=True):
            h = node.host
            # The anycast VIP lives on every node; the master VIP comes with VRRP.
            h.ip("addr", "add", f"{VIP_ANY}/32", "dev", "lo")
            node.start_who()
            if backend == "bird":
                node.bird = Bird(h, self.workdir / f"bird-{h.name}")
                node.bird.dir.mkdir(parents=True, exist_ok=True)
                include = node.bird.dir / "pka4.conf"
                include.write_text("")  # BIRD needs the file to exist when it parses
                node.bird.start(node_bird_conf(h, node.asn, include))
            node.py.start(node_config(node, backend, prio, web_extra))

    @staticmethod
    def lab_signal_group(node: Node, sig: int) -> None:
        """Signal a node's daemon with its speaker (one process group)."""
        os.killpg(node.py.pid, sig)
