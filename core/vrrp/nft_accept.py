"""Non-accept mode: traffic to a MASTER's VIPs is dropped with nftables.

RFC 5798 6.4.3: a master that is not the address owner must not accept
packets addressed to its VIPs unless Accept_Mode is on.  keepalived 2.2.7
(vrrp.c ``vrrp_handle_accept_mode``, vrrp_nftables.c) does it with nftables
when an instance is not in accept mode and is not the address owner:

* ``accept`` defaults to on, except in strict mode (``vrrp_strict`` /
  ``strict_mode``), where it defaults to off; ``no_accept`` turns it off;
  the address owner (priority 255) always accepts (core/config/semantics.py
  decides it once);
* without a configured firewall it uses its nftables table ``keepalived``
  ("use_vmac or no_accept/strict specified, but no firewall configured -
  using nftables");
* the drop rules match sets of addresses; a VIP (and eVIP) joins the set
  just before the addresses are added on becoming MASTER ("setting firewall
  drop rule") and leaves it just after they are removed ("removing firewall
  drop rule"); the tables go at shutdown.

The layout is keepalived's, measured with ``nft list ruleset`` beside
keepalived 2.2.7 (tests/test_vrrp_strict.py compares them), in a table of
our own name by default (:data:`NFT_TABLE`, as vmac.py's ``pykeepalived``),
or the one global_defs ``nftables [NAME]`` gives (no NAME: ``keepalived``,
as keepalived), base chains at ``nftables_priority`` (default -1)::

    table ip pykeepalived_accept {
        set vips { type ipv4_addr; }
        chain out { type filter hook output priority filter - 1; policy accept;
                    ip saddr @vips drop }
        chain in  { type filter hook input priority filter - 1; policy accept;
                    ip daddr @vips drop }
    }
    table ip6 pykeepalived_accept {
        set vips { type ipv6_addr; }
        set neighbor-discovery { type icmpv6_type; flags constant;
                                 elements = { nd-neighbor-solicit, nd-neighbor-advert } }
        set vips_link_local { type ipv6_addr . iface_index; }
        chain out { ...; icmpv6 type @neighbor-discovery accept
                    ip6 saddr fe80::/10 goto out_link_local
                    ip6 saddr @vips drop }
        chain in  { ...; icmpv6 type @neighbor-discovery accept
                    ip6 daddr fe80::/10 goto in_link_local
                    ip6 daddr @vips drop }
        chain in_link_local  { ip6 daddr . iif @vips_link_local drop }
        chain out_link_local { ip6 saddr . oif @vips_link_local drop }
    }

The tables are made with the ``nft`` command once, when the VRRP engine
starts (replacing whatever a crashed run left, in one transaction) and
deleted when it stops; a start with no instance in non-accept mode deletes
a stale table too, so a kill -9 and a restart leave no drop rule behind.
Set elements change at every transition, on the VRRP loop, so they are
sent as one nfnetlink batch on a netlink socket (microseconds) rather than
by a process (milliseconds the adverts cannot wait for).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pykeepalived.core.vrrp.effects import run_nft

log = logging.getLogger("pykeepalived.vrrp")

NFT_TABLE = "pykeepalived_accept"

# linux/netlink.h, linux/netfilter/nfnetlink.h, nf_tables.h
NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 0x2
NLA_F_NESTED = 0x8000
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_DATA_VALUE = 1
NFPROTO = {4: 2, 6: 10}  # NFPROTO_IPV4, NFPROTO_IPV6

_RULESET4 = """table ip {t} {{
    set vips {{ type ipv4_addr; }}
    chain out {{
        type filter hook output priority {p}; policy accept;
        ip saddr @vips drop
    }}
    chain in {{
        type filter hook input priority {p}; policy accept;
        ip daddr @vips drop
    }}
}}
"""
_RULESET6 = """table ip6 {t} {{
    set vips {{ type ipv6_addr; }}
    set neighbor-discovery {{
        type icmpv6_type; flags constant;
        elements = {{ nd-neighbor-solicit, nd-neighbor-advert }}
    }}
    set vips_link_local {{ type ipv6_addr . iface_index; }}
    chain out {{
        type filter hook output priority {p}; policy accept;
        icmpv6 type @neighbor-discovery accept
        ip6 saddr fe80::/10 goto out_link_local
        ip6 saddr @vips drop
    }}
    chain in {{
        type filter hook input priority {p}; policy accept;
        icmpv6 type @neighbor-discovery accept
        ip6 daddr fe80::/10 goto in_link_local
        ip6 daddr @vips drop
    }}
    chain in_link_local {{
        ip6 daddr . iif @vips_link_local drop
    }}
    chain out_link_local {{
        ip6 saddr . oif @vips_link_local drop
    }}
}}
"""


@dataclass(frozen=True)
class Element:
    """One set element: an address, with its interface index when link-local."""

    family: int
    set_name: str
    key: bytes


def element(address: str, ifindex: int | None) -> Element:
    """The element keepalived adds for ``address`` (on interface ``ifindex``)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return Element(4, "vips", ip.packed)
    if ip.is_link_local:
        # a concatenated key: each part in its own 32-bit registers,
        # the interface index in host byte order (nft's iface_index)
        return Element(6, "vips_link_local", ip.packed + struct.pack("=I", ifindex or 0))
    return Element(6, "vips", ip.packed)


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _msg(kind: int, flags: int, seq: int, family: int, res_id: int, body: bytes) -> bytes:
    payload = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


def setelem_batch(add: bool, table: str, elements: Iterable[Element], seq: int) -> bytes:
    """One nfnetlink transaction adding (``add``) or deleting ``elements``.

    keepalived adds with NLM_F_CREATE | NLM_F_EXCL; an element already there
    is an error that changes nothing, so adding is not exclusive here:
    idempotent, like the address operations (effects.py)."""
    by_set: dict[tuple[int, str], list[bytes]] = {}
    for e in elements:
        by_set.setdefault((e.family, e.set_name), []).append(e.key)
    out = [_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, b"")]
    kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_NEWSETELEM if add else NFT_MSG_DELSETELEM)
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if add else 0)
    for (family, set_name), keys in by_set.items():
        elems = b"".join(
            _attr(
                NFTA_LIST_ELEM | NLA_F_NESTED,
                _attr(NFTA_SET_ELEM_KEY | NLA_F_NESTED, _attr(NFTA_DATA_VALUE, key)),
            )
            for key in keys
        )
        body = (
            _attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
            + _attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
            + _attr(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, elems)
        )
        seq += 1
        out.append(_msg(kind, flags, seq, NFPROTO[family], 0, body))
    seq += 1
    out.append(_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, b""))
    return b"".join(out)


def _errors(data: bytes) -> list[int]:
    """The non-zero errnos in a buffer of netlink acks."""
    errs: list[int] = []
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind == NLMSG_ERROR and off + 20 <= len(data):
            (code,) = struct.unpack_from("=i", data, off + 16)
            if code:
                errs.append(-code)
        off += (length + 3) & ~3
    return errs


class AcceptFirewall:
    """The drop rules of every instance in non-accept mode (one per engine)."""

    def __init__(
        self, ifindex: Callable[[str], int | None], table: str = NFT_TABLE, priority: int = -1
    ) -> None:
        self.ifindex = ifindex
        #: keepalived's ``nftables NAME`` / ``nftables_priority`` (global_defs)
        self.table = table
        self.priority = priority
        #: Families whose table we made.
        self.families: set[int] = set()
        self._sock: socket.socket | None = None
        self._seq = 1
        self._warned = False

    # -- tables (the nft command, at start and stop) -----------------------------
    def _nft(self, script: str, *, quiet: bool = False) -> bool:
        done = run_nft(script, quiet=quiet)
        if done is None:
            if not quiet and not self._warned:
                self._warned = True
                log.warning("nft not found: no firewall drop rules for no_accept/strict instances")
            return False
        return done

    def configure(self, ext: dict[str, object]) -> None:
        """global_defs ``nftables [NAME]`` and ``nftables_priority`` (kept in
        ``GlobalDefs.ext``); a reload keeps the tables the daemon started with."""
        if not self.families:
            self.table = str(ext.get("nftables") or NFT_TABLE)
            priority = ext.get("nftables_priority")
            self.priority = priority if isinstance(priority, int) else -1

    def start(self, families: Iterable[int]) -> None:
        """Replace any table a crashed run left with fresh ones for ``families``
        (none: only the stale tables go)."""
        wanted = set(families)
        script = ""
        for fam in (4, 6):
            name = "ip" if fam == 4 else "ip6"
            # "add" first so that "delete" cannot fail: one transaction.
            script += f"add table {name} {self.table}\ndelete table {name} {self.table}\n"
            if fam in wanted:
                script += self._ruleset(fam)
        if not wanted:
            self._nft(script, quiet=True)
            return
        log.info("no_accept/strict instances: using nftables table %s", self.table)
        if self._nft(script):
            self.families = wanted

    def ensure(self, families: Iterable[int]) -> None:
        """A reload added instances of a family without its table yet."""
        missing = set(families) - self.families
        script = ""
        for fam in sorted(missing):
            name = "ip" if fam == 4 else "ip6"
            script += f"add table {name} {self.table}\ndelete table {name} {self.table}\n"
            script += self._ruleset(fam)
        if script and self._nft(script):
            self.families |= missing

    def _ruleset(self, family: int) -> str:
        return (_RULESET4 if family == 4 else _RULESET6).format(t=self.table, p=self.priority)

    def close(self) -> None:
        """Shutdown, after the instances removed their VIPs: the tables go."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        script = "".join(
            f"delete table {'ip' if fam == 4 else 'ip6'} {self.table}\n"
            for fam in sorted(self.families)
        )
        self.families.clear()
        if script:
            self._nft(script)

    # -- elements (netlink, on the VRRP loop) ------------------------------------
    def elements(self, addresses: Sequence[tuple[str, str]]) -> list[Element]:
        """The elements for (address, interface) pairs of one instance."""
        out = []
        for address, dev in addresses:
            ip = ipaddress.ip_address(address)
            out.append(element(address, self.ifindex(dev) if ip.is_link_local else None))
        return out

    def update(self, add: bool, elements: Sequence[Element], instance: str) -> bool:
        """Add or delete ``elements``; False (logged) when the kernel refused."""
        elements = [e for e in elements if e.family in self.families]
        if not elements:
            return False
        data = setelem_batch(add, self.table, elements, self._seq)
        self._seq += len(elements) + 2
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
                self._sock.bind((0, 0))
            self._sock.send(data)
            errs: list[int] = []
            while True:
                try:
                    errs += _errors(self._sock.recv(65536, socket.MSG_DONTWAIT))
                except BlockingIOError:
                    break
        except OSError as exc:
            log.warning("(%s) firewall drop rule: %s", instance, exc)
            return False
        # deleting an element that is not there (a restart) is not an error
        errs = [e for e in errs if not (not add and e == errno.ENOENT)]
        if errs:
            log.warning(
                "(%s) firewall drop rule %s failed: %s",
                instance,
                "add" if add else "delete",
                os.strerror(errs[0]),
            )
            return False
        return True


class InstanceRules:
    """One instance's drop rules: set when its VIPs are added, removed with them."""

    def __init__(
        self, firewall: AcceptFirewall, name: str, addresses: Sequence[tuple[str, str]]
    ) -> None:
        self.firewall = firewall
        self.name = name
        self.addresses = list(addresses)
        #: What was added (interface indexes as they were then), for removal.
        self.installed: list[Element] = []

    def add(self) -> None:
        if self.installed:
            return
        log.debug("(%s) setting firewall drop rule", self.name)
        elements = self.firewall.elements(self.addresses)
        if self.firewall.update(True, elements, self.name):
            self.installed = elements

    def remove(self) -> None:
        if not self.installed:
            return
        log.debug("(%s) removing firewall drop rule", self.name)
        self.firewall.update(False, self.installed, self.name)
        self.installed = []
