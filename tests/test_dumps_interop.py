"""keepalived 2.2.7 as the oracle for the signal dumps.

Two identical labs, one running a keepalived pair, the other a pykeepalived
pair, on the same configuration (VRRPv2 with PASS authentication in a sync
group, a VRRPv3 instance, a unicast instance, tracked scripts and a tracked
interface, notify scripts, a virtual server).  A third host in each lab sends
the same malformed adverts to both pairs; then both get the same signals and
their files are compared field by field.

keepalived's checker process needs the ip_vs module, which this machine does
not have (keepalived then exits: "IPVS: Can't initialize ipvs"), so keepalived
runs with ``--vrrp`` and the checker dump is only checked on our side.

Each daemon writes to a directory of its own through $TMPDIR, which
keepalived 2.2.7 honours for every dump (lib/utils.c set_tmp_dir): nothing is
written to /tmp, so the two never clash and nothing is left behind.

Values that legitimately differ, named here:

* timestamps: ``Last transition``, ``Read timeout``, JSON ``last_transition``;
* a ``vrrp_script``'s ``State`` (``running`` while the script runs, else ``idle``);
* counters that depend on how long each daemon ran: adverts received and
  sent (compared within a tolerance);
* secrets: keepalived 2.2.7 prints ``auth_pass``; pykeepalived masks it as
  keepalived 2.4 does;
* lines about keepalived internals pykeepalived has no equivalent for
  (:data:`KA_ONLY_GLOBAL`, :data:`KA_ONLY_INSTANCE`, :data:`KA_ONLY_SECTIONS`).
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import exporters as ex
import pytest

from pykeepalived.core.shell.version import signal_numbers
from pykeepalived.testing.daemons import PYKEEPALIVED, KaNode, Node, PyNode, wait_holder
from pykeepalived.testing.lab import Host, Lab
from pykeepalived.testing.scenarios import with_env

pytestmark = pytest.mark.netns

SIG = signal_numbers()
PASSWORD = "s3cret"

#: keepalived 2.2.7 global lines about what pykeepalived does not have
#: (process scheduling, SNMP, DBus, netlink buffers, nftables, umask).
KA_ONLY_GLOBAL = (
    " Gratuitous ARP for each secondary VMAC",
    " nftables ",
    " libnftnl version",
    " Max auto priority",
    " Min auto priority delay",
    " VRRP process priority",
    " VRRP don't swap",
    " VRRP realtime",
    " Checker process priority",
    " Checker don't swap",
    " Checker realtime",
    " BFD ",
    " SNMP ",
    " DBus ",
    " vrrp_netlink_",
    " process_monitor_rcv_bufs",
    " lvs_netlink_",
    " rs_init_notifies",
    " no_checker_emails",
    " rx_bufs_multiples",
    " umask",
)
#: the instance's socket file descriptors
KA_ONLY_INSTANCE = ("   fd_in ",)
#: keepalived's socket pool and interface table
KA_ONLY_SECTIONS = ("------< VRRP Sockpool >------", "------< Interfaces >------")
#: timestamps, and the password keepalived 2.2.7 prints
VOLATILE = ("   Last transition = ", "   Read timeout = ", "   Password = ")
#: keepalived leaves an instance's master down timer at 0 until it computes
#: it, which an instance that starts as MASTER in a sync group may never do;
#: pykeepalived always shows it (the timer a backup would run)
MASTER_DOWN_TIMER = "   Master down timer = "
KA_UNSET_DOWN_TIMER = MASTER_DOWN_TIMER + "0 usecs"
#: a script's State is "running" while it runs, "idle" between runs
VOLATILE_SCRIPT = ("   State = ",)
#: counters that depend on run time
TIMING_STATS = ("advert_rcvd", "advert_sent")


def config(me: int, peer: int, state: str, priority: int) -> str:
    src, dst = f"192.0.2.{me}", f"192.0.2.{peer}"
    return f"""
global_defs {{
    router_id dumps{me}
    enable_script_security
    script_user root
}}
vrrp_script chk_ok {{
    script "/bin/true"
    interval 1
    weight -20
}}
vrrp_script chk_fail {{
    script "/bin/false"
    interval 1
    weight -30
}}
vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass {PASSWORD}
    }}
    virtual_ipaddress {{
        192.0.2.100/24
        192.0.2.101/24 dev eth0 label eth0:1
    }}
}}
vrrp_instance VI_2 {{
    state {state}
    interface eth0
    virtual_router_id 52
    priority {priority}
    advert_int 1
    track_script {{
        chk_ok
        chk_fail
    }}
    virtual_ipaddress {{
        192.0.2.102/24
    }}
}}
vrrp_instance VI_3 {{
    state {state}
    interface eth0
    virtual_router_id 53
    priority {priority}
    advert_int 1
    notify_master "/bin/true master"
    virtual_ipaddress {{
        192.0.2.103/24
    }}
}}
vrrp_instance VI_4 {{
    state {state}
    interface eth0
    virtual_router_id 54
    priority {priority}
    version 3
    advert_int 0.5
    track_interface {{
        dum0 weight -10
    }}
    virtual_ipaddress {{
        192.0.2.104/24
    }}
}}
vrrp_instance VI_5 {{
    state {state}
    interface eth0
    virtual_router_id 55
    priority {priority}
    advert_int 1
    unicast_src_ip {src}
    unicast_peer {{
        {dst}
    }}
    virtual_ipaddress {{
        192.0.2.105/24
    }}
}}
vrrp_instance VI_6 {{
    state {state}
    interface eth0
    virtual_router_id 56
    priority {priority}
    version 3
    native_ipv6
    advert_int 1
    virtual_ipaddress {{
        2001:db8::56/64
    }}
}}
vrrp_sync_group G1 {{
    group {{
        VI_1
        VI_3
    }}
}}
virtual_server 192.0.2.200 80 {{
    delay_loop 30
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.0.2.{peer} 80 {{
        weight 2
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""


# -- the malformed adverts (VRRPv2, to 224.0.0.18) and what keepalived counts for each -----------
INJECT = r"""
import socket, struct, sys
src, count = sys.argv[1], int(sys.argv[2])

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF)
    t += t >> 16
    return ~t & 0xFFFF

def advert(vrid, prio, addrs, auth_type=0, auth=b"", ptype=1, naddr=None, extra=b""):
    body = b"".join(socket.inet_aton(a) for a in addrs)
    n = len(addrs) if naddr is None else naddr
    hdr = struct.pack("!BBBBBBH", 0x20 | ptype, vrid, prio, n, auth_type, 1, 0)
    pkt = hdr + body + auth.ljust(8, b"\0")[:8]
    pkt = pkt[:6] + struct.pack("!H", csum(pkt)) + pkt[8:]
    return pkt + extra

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.bind((src, 0))
def send(pkt, ttl=255):
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.sendto(pkt, ("224.0.0.18", 0))

vips = ["192.0.2.100", "192.0.2.101"]
good = dict(auth_type=1, auth=b"s3cret")
for _ in range(count):
    send(advert(51, 50, vips, auth_type=1, auth=b"wrong"))     # auth_failure
    send(advert(51, 50, vips, **good), ttl=64)                  # ip_ttl_err
    send(advert(51, 50, vips))                                  # authtype_mismatch
    send(advert(51, 50, vips, auth_type=7))                     # invalid_authtype
    send(advert(51, 50, vips, extra=b"\0\0\0\0", **good))       # packet_len_err
    send(advert(51, 50, vips, ptype=2, **good))                 # invalid_type_rcvd
    send(advert(51, 50, vips[:1], **good))                      # addr_list_err (count)
    send(advert(51, 50, [vips[0], "192.0.2.222"], **good))      # addr_list_err, counted
    send(advert(52, 50, ["192.0.2.102"]), ttl=1)                # ip_ttl_err on VI_2
"""
INJECT_ROUNDS = 2
#: per injection round, on each host (host0 MASTER and host1 BACKUP alike)
EXPECTED_ERRORS = {
    "VI_1": {
        "auth_failure": 1,
        "ip_ttl_err": 1,
        "authtype_mismatch": 1,
        "invalid_authtype": 1,
        "packet_len_err": 1,
        "invalid_type_rcvd": 1,
        "addr_list_err": 2,
    },
    "VI_2": {"ip_ttl_err": 1},
}
ERROR_STATS = (
    "packet_len_err",
    "advert_interval_err",
    "ip_ttl_err",
    "invalid_type_rcvd",
    "addr_list_err",
    "invalid_authtype",
    "authtype_mismatch",
    "auth_failure",
)


class Pair:
    """One lab: host0 MASTER (priority 150), host1 BACKUP (100), host2 injects."""

    def __init__(self, lab: Lab, make: Callable[[Host, Path], Node], root: Path) -> None:
        self.lab = lab
        self.hosts = [lab[0], lab[1], lab[2]]
        self.addr = [sorted(h.addresses())[0] for h in self.hosts]
        self.nodes: list[Node] = []
        for host in self.hosts[:2]:
            # a tracked interface of its own (no dummy module here: a veth pair)
            host.ip("link", "add", "dum0", "type", "veth", "peer", "name", "dum1")
            host.ip("link", "set", "dum1", "up")
            host.ip("link", "set", "dum0", "up")
            node = make(host, root)
            (node.dir / "tmp").mkdir()
            with_env(node, {"TMPDIR": str(node.dir / "tmp")})
            self.nodes.append(node)

    def same_hosts(self, text: str) -> str:
        """``text`` with each host's link-local address named, not spelt
        (they differ between the labs: random MACs)."""
        for i, host in enumerate(self.hosts):
            for addr in host.addresses():
                if addr.startswith("fe80:"):
                    text = text.replace(addr, f"<link-local of host{i}>")
        return text

    def start_master(self) -> None:
        me = [int(a.rsplit(".", 1)[1]) for a in self.addr]
        self.nodes[0].start(config(me[0], me[1], "MASTER", 150))

    def start_backup(self) -> None:
        me = [int(a.rsplit(".", 1)[1]) for a in self.addr]
        self.nodes[1].start(config(me[1], me[0], "BACKUP", 100))

    def wait_vips(self, i: int) -> None:
        for vip in [*(f"192.0.2.10{k}" for k in range(6)), "2001:db8::56"]:
            wait_holder(self.hosts[:2], vip, self.hosts[i].name, timeout=20)

    def tmp(self, i: int) -> Path:
        return self.nodes[i].dir / "tmp"

    def inject(self) -> None:
        self.hosts[2].run([sys.executable, "-c", INJECT, self.addr[2], str(INJECT_ROUNDS)])

    def signal(self, i: int, what: str, *files: str) -> dict[str, str]:
        """Send keepalived's ``what`` signal to daemon ``i``; its files' texts."""
        for name in files:
            (self.tmp(i) / name).unlink(missing_ok=True)
        self.nodes[i].signal(SIG[what])
        return {name: wait_file(self.tmp(i) / name, self.nodes[i]) for name in files}


def wait_file(path: Path, node: Node, timeout: float = 10.0) -> str:
    """The file once complete (keepalived renames first and writes after:
    wait until it ends with a newline and stops growing)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = None
        if text and text.endswith("\n") and text == last:
            return text
        last = text
        time.sleep(0.1)
    raise AssertionError(f"{node.label}: no complete {path.name}\n{node.tail()}")


def wait_until_true(cond: Callable[[], bool], node: Node, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{node.label}: condition not met in {timeout}s\n{node.tail()}")
        time.sleep(0.1)


# -- comparing -------------------------------------------------------------------------------------
def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("------<"):
            current = line
            out[current] = []
        else:
            out.setdefault(current, []).append(line)
    return out


def blocks(lines: list[str], opener: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    name = ""
    for line in lines:
        if line.startswith(opener):
            name = line
            out[name] = []
        out.setdefault(name, []).append(line)
    return out


def _normal(line: str, volatile: tuple[str, ...] = VOLATILE) -> str:
    for prefix in volatile:
        if line.startswith(prefix):
            return prefix + "<volatile>"
    return line


def compare_data(ka: str, py: str) -> list[str]:
    """Differences other than the named ones, as readable lines (empty: same)."""
    diffs: list[str] = []
    ka_s, py_s = sections(ka), sections(py)
    for title in ka_s:
        if title not in py_s and title not in KA_ONLY_SECTIONS:
            diffs.append(f"section {title} missing")
    for title in py_s:
        if title not in ka_s:
            diffs.append(f"section {title} only in pykeepalived")
    glob = "------< Global definitions >------"
    ka_g = [ln for ln in ka_s.get(glob, []) if not ln.startswith(KA_ONLY_GLOBAL)]
    if ka_g != py_s.get(glob):
        diffs.append(f"global definitions:\n  ka {ka_g}\n  py {py_s.get(glob)}")
    for title, opener, ignore, volatile in (
        ("------< VRRP Topology >------", " VRRP Instance = ", KA_ONLY_INSTANCE, VOLATILE),
        ("------< VRRP Sync groups >------", " VRRP Sync Group = ", (), ()),
        ("------< VRRP Scripts >------", " VRRP Script = ", (), VOLATILE_SCRIPT),
    ):
        ka_b = blocks(ka_s.get(title, []), opener)
        py_b = blocks(py_s.get(title, []), opener)
        if list(ka_b) != list(py_b):
            diffs.append(f"{title}: {list(ka_b)} != {list(py_b)}")
        for name, ka_lines in ka_b.items():
            if KA_UNSET_DOWN_TIMER in ka_lines:
                volatile = (*volatile, MASTER_DOWN_TIMER)
            want = [_normal(ln, volatile) for ln in ka_lines if not ln.startswith(ignore)]
            got = [_normal(ln, volatile) for ln in py_b.get(name, [])]
            if want != got:
                diff = difflib.unified_diff(want, got, "keepalived", "pykeepalived", lineterm="")
                diffs.append(f"{name.strip()}:\n" + "\n".join(diff))
    return diffs


def close(a: int, b: int) -> bool:
    return abs(a - b) <= max(3, (a + b) // 4)


def compare_stats(ka: dict[str, dict[str, int]], py: dict[str, dict[str, int]]) -> list[str]:
    diffs = []
    if list(ka) != list(py):
        return [f"instances {list(ka)} != {list(py)}"]
    for name in ka:
        if sorted(ka[name]) != sorted(py[name]):
            diffs.append(f"{name}: counters {sorted(ka[name])} != {sorted(py[name])}")
        for key, want in ka[name].items():
            got = py[name].get(key, -1)
            if key in TIMING_STATS:
                if not close(want, got):
                    diffs.append(f"{name} {key}: ka {want} py {got} (beyond tolerance)")
            elif want != got:
                diffs.append(f"{name} {key}: ka {want} py {got}")
    return diffs


def compare_json(ka_text: str, py_text: str) -> list[str]:
    ka, py = json.loads(ka_text), json.loads(py_text)
    diffs = []
    for a, b in zip(ka, py, strict=True):
        name = a["data"]["iname"]
        for part in ("data", "stats"):
            if list(a[part]) != list(b[part]):
                diffs.append(f"{name} {part} keys:\n  ka {list(a[part])}\n  py {list(b[part])}")
            for key, want in a[part].items():
                got = b[part].get(key)
                if type(want) is not type(got):
                    diffs.append(f"{name} {key}: type {type(want)} != {type(got)}")
                elif key == "last_transition" or (part == "stats" and key in TIMING_STATS):
                    continue
                elif key == "auth_data":
                    if (want, got) != (PASSWORD, "********"):
                        diffs.append(f"{name} auth_data: ka {want!r} py {got!r}")
                elif want != got:
                    diffs.append(f"{name} {key}: ka {want!r} py {got!r}")
    return diffs


@pytest.fixture
def pairs(lab: Callable[..., Lab], tmp_path: Path) -> tuple[Pair, Pair]:
    ka = Pair(lab(3), lambda h, root: KaNode(h, root), tmp_path / "ka")
    py = Pair(lab(3), lambda h, root: PyNode(h, root), tmp_path / "py")
    assert ka.addr == py.addr  # same addresses: same "Using src_ip", same master router
    return ka, py


def test_dumps_match_keepalived(pairs: tuple[Pair, Pair]) -> None:
    ka, py = pairs
    # the master first, so that the backup never becomes master at start-up
    # (its become_master is then 0 on both sides, whatever the start-up times)
    for p in (ka, py):
        p.start_master()
    for p in (ka, py):
        p.wait_vips(0)
        p.start_backup()
    for p in (ka, py):
        for name in ("VI_4", "VI_6"):
            p.nodes[1].wait_log(f"({name}) Entering BACKUP STATE", timeout=20, since_mark=False)
    time.sleep(2.5)  # a few adverts and script runs each
    # our checker part up too (it starts after the VRRP part, and its backend
    # probe can take a while on a loaded machine)
    for node in py.nodes:
        assert isinstance(node, PyNode)
        wait_until_true(lambda n=node: "virtual_servers" in n.status(), node)
    ka.inject()
    py.inject()
    time.sleep(1.0)

    files = ("keepalived.data", "keepalived.stats", "keepalived.json")
    got: dict[str, list[dict[str, str]]] = {"ka": [], "py": []}
    for label, p in (("ka", ka), ("py", py)):
        for i in range(2):
            out = p.signal(i, "DATA", "keepalived.data")
            out |= p.signal(i, "STATS", "keepalived.stats")
            out |= p.signal(i, "JSON", "keepalived.json")
            got[label].append(out)
    # the checker dump (pykeepalived only: keepalived's checker needs ip_vs)
    check = wait_file(py.tmp(0) / "keepalived_check.data", py.nodes[0])
    assert " VS VIP = 192.0.2.200, VPORT = 80" in check.splitlines()

    for i in range(2):
        ka_f, py_f = got["ka"][i], got["py"][i]
        assert set(ka_f) == set(py_f) == set(files)
        diffs = compare_data(
            ka.same_hosts(ka_f["keepalived.data"]), py.same_hosts(py_f["keepalived.data"])
        )
        ka_stats = ex.parse_stats(ka_f["keepalived.stats"])
        py_stats = ex.parse_stats(py_f["keepalived.stats"])
        diffs += compare_stats(ka_stats, py_stats)
        diffs += compare_json(ka_f["keepalived.json"], py_f["keepalived.json"])
        assert not diffs, f"host{i}:\n" + "\n".join(diffs)
        # the oracle did count what the injector sent (else the comparison proves little)
        for name, errors in EXPECTED_ERRORS.items():
            for key, n in errors.items():
                assert ka_stats[name][key] == n * INJECT_ROUNDS, (i, name, key, ka_stats[name])
        # what the exporters make of each: the same
        for f, parse in (
            ("keepalived.data", lambda t: ex.parse_vrrp_data(t)),
            ("keepalived.data", lambda t: ex.parse_vrrp_scripts(t)),
        ):
            assert parse(ka_f[f]) == parse(py_f[f])
        for a, b in zip(
            ex.parse_json(ka_f["keepalived.json"]),
            ex.parse_json(py_f["keepalived.json"]),
            strict=True,
        ):
            a.pop("stats"), b.pop("stats")
            assert a == b
        assert PASSWORD not in "".join(py_f.values())

    # STATS_CLEAR on the backups: printed, then zeroed
    cleared = {
        label: p.signal(1, "STATS_CLEAR", "keepalived.stats")
        for label, p in (("ka", ka), ("py", py))
    }
    for label in ("ka", "py"):
        before = ex.parse_stats(cleared[label]["keepalived.stats"])
        assert before["VI_1"]["auth_failure"] == INJECT_ROUNDS, label
    after = {
        label: ex.parse_stats(p.signal(1, "STATS", "keepalived.stats")["keepalived.stats"])
        for label, p in (("ka", ka), ("py", py))
    }
    for label in ("ka", "py"):
        for name, counters in after[label].items():
            assert all(counters[k] == 0 for k in ERROR_STATS), (label, name, counters)

    # the masters stop: priority 0 adverts, the backups take over
    for p in (ka, py):
        assert p.nodes[0].terminate() == 0
    for p in (ka, py):
        p.wait_vips(1)
    final = {}
    for label, p in (("ka", ka), ("py", py)):
        final[label] = p.signal(1, "STATS", "keepalived.stats") | p.signal(
            1, "JSON", "keepalived.json"
        )
    ka_stats = ex.parse_stats(final["ka"]["keepalived.stats"])
    py_stats = ex.parse_stats(final["py"]["keepalived.stats"])
    assert not compare_stats(ka_stats, py_stats), compare_stats(ka_stats, py_stats)
    # VI_5 is unicast: the stopping master's priority 0 advert reaches it too
    for name in ka_stats:
        assert (ka_stats[name]["pri_zero_rcvd"], ka_stats[name]["become_master"]) == (1, 1), name
    assert not compare_json(final["ka"]["keepalived.json"], final["py"]["keepalived.json"])


def test_pid_file_signals_and_dump_file_keywords(lab: Callable[..., Lab], tmp_path: Path) -> None:
    """What mehdy's host collector does: pid file -> ``keepalived --signum`` ->
    kill -> the files; here at the paths of keepalived 2.3.3+'s
    state_dump_file/stats_dump_file/json_dump_file with json_version 2
    (keywords keepalived 2.2.7 refuses: pykeepalived only)."""
    host = lab(1)[0]
    node = PyNode(host, tmp_path)
    (node.dir / "tmp").mkdir()
    with_env(node, {"TMPDIR": str(node.dir / "tmp")})
    dump_dir = tmp_path / "dumps"
    dump_dir.mkdir()
    me = int(sorted(host.addresses())[0].rsplit(".", 1)[1])
    text = config(me, me + 1, "MASTER", 150).replace(
        "    script_user root\n",
        f"    script_user root\n    state_dump_file {dump_dir}/state.txt\n"
        f"    stats_dump_file {dump_dir}/\n    json_dump_file {dump_dir}/ka.json\n"
        "    json_version 2\n",
    )
    node.start(text)
    wait_holder([host], "192.0.2.100", host.name, timeout=20)
    wait_until_true(lambda: "virtual_servers" in node.status(), node)
    pid = int((node.dir / "pid").read_text())
    assert pid == node.pid
    for what in ("DATA", "STATS", "JSON"):
        number = subprocess.run(
            [PYKEEPALIVED, f"--signum={what}"], capture_output=True, text=True, check=True
        ).stdout
        subprocess.run(["kill", f"-{json.loads(number)}", str(pid)], check=True)
    data = wait_file(dump_dir / "state.txt", node)
    assert ex.parse_vrrp_data(data)["VI_1"].state == 2
    assert " VS VIP = 192.0.2.200, VPORT = 80" in wait_file(dump_dir / "state_check.txt", node)
    stats = ex.parse_stats(wait_file(dump_dir / "keepalived.stats", node))
    assert stats["VI_1"]["advert_sent"] > 0
    doc = json.loads(wait_file(dump_dir / "ka.json", node))
    assert [i["data"]["iname"] for i in doc["vrrp"]] == [
        "VI_1",
        "VI_2",
        "VI_3",
        "VI_4",
        "VI_5",
        "VI_6",
    ]
    # nothing went to the default directory, and the daemon carried on
    assert list((node.dir / "tmp").iterdir()) == []
    assert node.running()


class AliasNode(PyNode):
    """pykeepalived started through a link named ``keepalived``."""

    def argv(self) -> list[str]:
        alias = self.dir / "bin" / "keepalived"
        if not alias.exists():
            alias.parent.mkdir()
            alias.symlink_to(PYKEEPALIVED)
        return [str(alias), *super().argv()[1:]]


def gen2brain_find(ps_output: str) -> list[int]:
    """gen2brain/keepalived_exporter collector.go ``processes`` + ``signal``:
    pids whose first argument's basename is ``keepalived``."""
    pids = []
    for line in ps_output.rstrip("\n").split("\n")[1:]:
        f = line.strip().split()
        if len(f) > 3 and not f[3].startswith("[") and f[3].rsplit("/", 1)[-1] == "keepalived":
            pids.append(int(f[0]))
    return pids


def test_keepalived_alias_as_gen2brain_finds_it(lab: Callable[..., Lab], tmp_path: Path) -> None:
    host = lab(1)[0]
    node = AliasNode(host, tmp_path)
    (node.dir / "tmp").mkdir()
    with_env(node, {"TMPDIR": str(node.dir / "tmp")})
    me = int(sorted(host.addresses())[0].rsplit(".", 1)[1])
    node.start(config(me, me + 1, "MASTER", 150))
    wait_holder([host], "192.0.2.100", host.name, timeout=20)
    ps = subprocess.run(
        ["ps", "-axwwo", "pid,pcpu,pmem,args"], capture_output=True, text=True, check=True
    ).stdout
    assert node.pid in gen2brain_find(ps)
    assert Path(f"/proc/{node.pid}/comm").read_text().strip() == "keepalived"
    # its hard-coded SIGJSON (SIGRTMIN taken as 32, plus 4) is keepalived's
    # SIGRTMIN+2 with glibc's SIGRTMIN of 34, and ours
    assert SIG["JSON"] == 32 + 4
    (node.dir / "tmp" / "keepalived.json").unlink(missing_ok=True)
    node.signal(32 + 4)
    rows = ex.parse_json(wait_file(node.dir / "tmp" / "keepalived.json", node))
    assert (rows[0]["iname"], rows[0]["state"]) == ("VI_1", 2)
    # what mehdy's exporter runs, through the same link
    alias = str(node.dir / "bin" / "keepalived")
    version = subprocess.run([alias, "-v"], capture_output=True, text=True, check=True)
    assert ex.parse_version(version.stderr) >= (1, 3, 8)
    assert node.running()
