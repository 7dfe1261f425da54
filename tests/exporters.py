"""What the two widely used keepalived Prometheus exporters read, re-stated in
Python so tests can hold pykeepalived's files (and keepalived's) to it.

mehdy/keepalived-exporter (read at commit 5aedbfb):

* internal/collector/parser.go ``ParseVRRPData``: a line `` VRRP Instance = X``
  (one leading space) opens an instance; lines with three leading spaces are
  ``key = value`` (or ``key: value``) pairs, five leading spaces continue the
  previous key's list (the ``Virtual IP (n):`` addresses); any other line
  closes the instance.  It keeps ``State``, ``Wantstate`` (INIT/BACKUP/
  MASTER/FAULT, anything else is an error), ``Interface``, ``Gratuitous ARP
  delay`` and ``Virtual Router ID`` (integers) and the VIPs (``ParseVIP``:
  ``address dev ifname ...``, at least three words).
* ``ParseVRRPScript``: `` VRRP Script = X`` then ``Status`` (GOOD/BAD) and
  ``State`` (idle/running/requested termination/forcing termination).
* ``ParseStats``: ``VRRP Instance: X``; two-space lines ending in ``:`` open
  a section, four-space ``key: integer`` lines are its counters, two-space
  ``Became master``/``Released master`` are top-level counters; a value that
  is not an integer is an error.
* internal/collector/collector.go: the JSON file is a list of ``{data, stats}``
  decoded into Go ``int`` fields (a number with a fraction or exponent fails)
  and ``[]string`` ``vips``/``evips``.
* internal/types/host/keepalived_host_collector_host.go and
  internal/types/utils/version.go: ``keepalived -v`` (version from the second
  word of the first stderr line, >= 1.3.8 for ``--signum``), ``keepalived
  --version`` containing ``--enable-json``, ``keepalived --signum=NAME`` on
  stdout parsed as a JSON number; the pid file; ``/tmp/keepalived.{data,stats,json}``.

gen2brain/keepalived_exporter (collector/collector.go, commit 53a0c0a): finds
the process whose ``ps -axwwo pid,pcpu,pmem,args`` first argument has the
basename ``keepalived``, sends signal 36 (it hard-codes SIGRTMIN as 32, plus 4)
and decodes ``/tmp/keepalived.json`` into ``iname``, ``ifp_ifname``,
``last_transition`` (float), ``vrid``/``state``/``wantstate`` and the stats (ints).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

VRRP_STATES = ["INIT", "BACKUP", "MASTER", "FAULT"]
SCRIPT_STATUSES = ["BAD", "GOOD"]
SCRIPT_STATES = ["idle", "running", "requested termination", "forcing termination"]

#: Go ``int`` fields of the exporters' JSON structs.
JSON_INT_DATA = ("state", "wantstate", "garp_delay", "vrid")
JSON_STATS = (
    "advert_rcvd",
    "advert_sent",
    "become_master",
    "release_master",
    "packet_len_err",
    "advert_interval_err",
    "ip_ttl_err",
    "invalid_type_rcvd",
    "addr_list_err",
    "invalid_authtype",
    "authtype_mismatch",
    "auth_failure",
    "pri_zero_rcvd",
    "pri_zero_sent",
)


class ExporterError(AssertionError):
    pass


@dataclass
class VrrpData:
    name: str
    state: int = -1
    wantstate: int = -1
    intf: str = ""
    garp_delay: int = -1
    vrid: int = -1
    vips: list[str] = field(default_factory=list)
    excluded_vips: list[str] = field(default_factory=list)


def _state(text: str) -> int:
    if text not in VRRP_STATES:
        raise ExporterError(f"unknown state found: {text}")
    return VRRP_STATES.index(text)


def _atoi(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ExporterError(f"not an integer: {text!r}")
    return int(text)


def parse_vrrp_data(text: str) -> dict[str, VrrpData]:
    """mehdy ``ParseVRRPData``."""
    data: dict[str, VrrpData] = {}
    instance = key = val = ""
    for line in text.splitlines():
        if line.startswith(" VRRP Instance") and "=" in line:
            instance = line.strip().split("=")[1].strip()
            data[instance] = VrrpData(instance)
        elif line.startswith("   ") and instance:
            if line.startswith("     "):
                val = line.strip()
            else:
                if "=" in line:
                    args = line.strip().split("=")
                elif ":" in line:
                    args = line.strip().split(":")
                else:
                    continue
                key = args[0].strip()
                if key == "Virtual IP":
                    continue
                val = args[1].strip()
            d = data[instance]
            if (key.startswith("Virtual IP (") or key == "Virtual IP") and val:
                d.vips.append(val.strip())
            if key.startswith("Virtual IP Excluded") and val:
                d.excluded_vips.append(val.strip())
            if key == "State":
                d.state = _state(val)
            elif key == "Wantstate":
                d.wantstate = _state(val)
            elif key in ("Interface", "Listening device"):
                d.intf = val
            elif key == "Gratuitous ARP delay":
                d.garp_delay = _atoi(val)
            elif key == "Virtual Router ID":
                d.vrid = _atoi(val)
        elif line.startswith(" VRRP Version") or line.startswith(" VRRP Script"):
            continue
        else:
            instance = ""
    return data


def parse_vip(vip: str) -> tuple[str, str]:
    """mehdy ``ParseVIP``: (address, interface)."""
    args = vip.split(" ")
    if len(args) < 3:
        raise ExporterError(f"Failed to parse VIP from keepalived data: {vip!r}")
    return args[0], args[2]


def parse_vrrp_scripts(text: str) -> dict[str, tuple[str, str]]:
    """mehdy ``ParseVRRPScript``: name -> (Status, State), both checked."""
    out: dict[str, tuple[str, str]] = {}
    name = status = state = ""

    def close() -> None:
        nonlocal name, status, state
        if name:
            if status not in SCRIPT_STATUSES or state not in SCRIPT_STATES:
                raise ExporterError(f"script {name}: status {status!r} state {state!r}")
            out[name] = (status, state)
        name = status = state = ""

    for line in text.splitlines():
        if line.startswith(" VRRP Script") and "=" in line:
            close()
            name = line.strip().split("=")[1].strip()
        elif line.startswith("   ") and name:
            if "=" not in line:
                continue
            k, v = (s.strip() for s in line.strip().split("=")[:2])
            if k == "Status":
                status = v
            elif k == "State":
                state = v
        elif not line.startswith("    "):
            close()
    close()
    return out


_SECTIONS = {
    "Advertisements": {"Received": "advert_rcvd", "Sent": "advert_sent"},
    "Packet Errors": {
        "Length": "packet_len_err",
        "TTL": "ip_ttl_err",
        "Invalid Type": "invalid_type_rcvd",
        "Advertisement Interval": "advert_interval_err",
        "Address List": "addr_list_err",
    },
    "Authentication Errors": {
        "Invalid Type": "invalid_authtype",
        "Type Mismatch": "authtype_mismatch",
        "Failure": "auth_failure",
    },
    "Priority Zero": {"Received": "pri_zero_rcvd", "Sent": "pri_zero_sent"},
}


def parse_stats(text: str) -> dict[str, dict[str, int]]:
    """mehdy ``ParseStats``: instance -> keepalived counter name -> value."""
    stats: dict[str, dict[str, int]] = {}
    instance = section = ""
    for line in text.splitlines():
        if line.startswith("VRRP Instance") and ":" in line:
            instance = line.strip().split(":")[1].strip()
            stats[instance] = {}
        elif line.startswith("  ") and line.endswith(":"):
            section = line.strip().split(":")[0].strip()
        elif line.startswith("    ") and section:
            k, v = (s.strip() for s in line.strip().split(":")[:2])
            name = _SECTIONS.get(section, {}).get(k)
            value = _atoi(v)
            if name:
                stats[instance][name] = value
        elif line.startswith("  ") and not line.endswith(":") and not line.startswith("    "):
            k, v = (s.strip() for s in line.strip().split(":")[:2])
            section = ""
            value = _atoi(v)
            if k == "Became master":
                stats[instance]["become_master"] = value
            elif k == "Released master":
                stats[instance]["release_master"] = value
    return stats


def _go_int(value: Any, what: str) -> int:
    # encoding/json refuses 5.0 or 1e3 for an int field: json.loads gives a float then
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExporterError(f"{what}: {value!r} does not decode into a Go int")
    return value


def parse_json(text: str) -> list[dict[str, Any]]:
    """Both exporters' JSON decoding (json_version 1: a list of {data, stats})."""
    doc = json.loads(text)
    if not isinstance(doc, list):
        raise ExporterError("keepalived.json is not a list (json_version 2?)")
    out = []
    for item in doc:
        data, stats = item["data"], item["stats"]
        row: dict[str, Any] = {"iname": str(data["iname"]), "ifp_ifname": str(data["ifp_ifname"])}
        for key in JSON_INT_DATA:
            row[key] = _go_int(data[key], key)
        if not isinstance(data["last_transition"], int | float):
            raise ExporterError("last_transition is not a number")
        for key in ("vips", "evips"):
            if key in data and not all(isinstance(v, str) for v in data[key]):
                raise ExporterError(f"{key} is not a list of strings")
        row["vips"] = list(data.get("vips", []))
        row["stats"] = {k: _go_int(stats[k], k) for k in JSON_STATS}
        out.append(row)
    return out


def parse_version(stderr: str) -> tuple[int, ...]:
    """mehdy ``ParseVersion`` (the first line, second word, without its v)."""
    lines = stderr.split("\n", 1)
    if len(lines) != 2:
        raise ExporterError("failed to parse keepalived version output")
    args = lines[0].split(" ")
    if len(args) < 2 or not re.fullmatch(r"v\d+(\.\d+)*", args[1]):
        raise ExporterError(f"unknown keepalived version format: {lines[0]!r}")
    return tuple(int(x) for x in args[1][1:].split("."))
