"""The nftables backend: virtual servers served by the kernel's packet engine.

Where the kernel has no ip_vs (containers, minimal kernels), the desired
table of :class:`pykeepalived.core.lvs.manager.VirtualServerManager` is
programmed as NAT rules in one table per address family that pykeepalived
owns (``table ip pykeepalived_lvs`` / ``table ip6 pykeepalived_lvs``).  The
layout follows kube-proxy's nftables mode::

    map services  { type ipv4_addr . inet_proto . inet_service : verdict }
    map anyport   { type ipv4_addr . inet_proto : verdict }      # port 0 services
    map fwmarks   { type mark : verdict }
    chain prerouting/output (nat, dstnat):
        meta mark vmap @fwmarks                                   # IPVS: fwmark first
        ip daddr . meta l4proto . th dport vmap @services
        ip daddr . meta l4proto vmap @anyport
    chain vs-tcp-192.0.2.100-80 { numgen random mod 5 vmap @sel-tcp-192.0.2.100-80 }
    map sel-tcp-192.0.2.100-80 { flags interval; 0-1 : goto rs-..., 2-4 : goto rs-... }
    chain rs-tcp-192.0.2.100-80-198.51.100.11-8080 { meta l4proto tcp dnat to 198.51.100.11:8080 }

Each real server of weight *w* owns an interval of *w* slots of the
selector (weighted); a weight of 0 owns none (no new connections, as in
IPVS).  The selector is ``numgen inc`` (rr, wrr), ``numgen random`` (the
connection-count schedulers, which nftables cannot express: reported once
with the scheduler used instead), ``jhash`` of the source address (sh) or
of the destination (dh), or one real server (fo).  Persistence is
kube-proxy's session affinity: each real server's chain adds the client
(masked by persistence_granularity) to a timed set of its own, and the
virtual server's chain sends a client found in one of those sets to that
real server before the selector is asked.

Updates are diffs, sent in one ``nft -f`` transaction (atomic: a packet sees
the old table or the new one): selector elements are deleted and added, a
selector rule whose modulus changed is replaced by handle, chains of real
servers that left are deleted.  Nothing that carries traffic is flushed, and
NAT rules are only consulted for the first packet of a connection: conntrack
keeps established connections where they are, as IPVS does.

``nft`` runs as a subprocess (python3-nftables is not importable from the
venv): asyncio's subprocess support keeps the event loop free.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import shutil
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from pykeepalived.core.lvs.manager import Forward, IpvsDest, IpvsService

log = logging.getLogger("pykeepalived.nft")

TABLE = "pykeepalived_lvs"
NFT = "nft"
#: Clients remembered per real server of a persistent virtual server.
AFFINITY_SIZE = 262144
#: Seconds one ``nft`` run may take (1,000 real servers take well under one).
NFT_TIMEOUT = 30.0

#: Schedulers nftables expresses (weights as slots of the selector).
EXACT_SCHEDULERS = frozenset({"rr", "wrr", "sh", "dh", "fo"})
#: What the others become, and why (keepalived/ipvsadm scheduler names).
CLOSEST: dict[str, tuple[str, str]] = {
    "lc": ("wrr", "it needs active connection counts"),
    "wlc": ("wrr", "it needs active connection counts"),
    "sed": ("wrr", "it needs active connection counts"),
    "nq": ("wrr", "it needs active connection counts"),
    "twos": ("wrr", "it needs active connection counts"),
    "lblc": ("dh", "it needs per-destination connection counts"),
    "lblcr": ("dh", "it needs per-destination connection counts"),
    "ovf": ("fo", "it needs active connection counts"),
    "mh": ("sh", "maglev hashing is not available; jhash is not consistent on changes"),
}


class NftError(RuntimeError):
    """``nft`` failed (the transaction was not applied)."""


def closest_scheduler(scheduler: str) -> tuple[str, str | None]:
    """The scheduler nftables applies for ``scheduler`` and, if it differs,
    why (one phrase).  Unknown names become wrr."""
    if scheduler in EXACT_SCHEDULERS:
        return scheduler, None
    closest, why = CLOSEST.get(scheduler, ("wrr", "it is unknown"))
    return closest, why


# -- rendering ------------------------------------------------------------------------------------


@dataclass
class _Vs:
    """One virtual service as nftables objects (desired or installed)."""

    name: str  # suffix shared by vs-/sel-/rs- objects
    family: str  # "ip" or "ip6"
    map: str  # "services", "anyport" or "fwmarks"
    key: str  # its element key in that map
    selector: str  # the vs chain's rule
    #: Slot interval (first, last) -> rs chain; a chain may own several.
    elements: dict[tuple[int, int], str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)  # rs chain -> slots it should own
    reals: dict[str, str] = field(default_factory=dict)  # rs chain -> its rule
    handle: int | None = None  # of the selector rule, once installed
    #: Persistence: the client key (``ip saddr`` or ``ip saddr & mask``) and
    #: the declaration of each real server's timed set of recent clients.
    affinity_key: str | None = None
    affinity_set: str = ""
    #: rs chain -> handle of its "recent client? goto" rule in the vs chain.
    affinity_handles: dict[str, int] = field(default_factory=dict)


def _safe(text: str) -> str:
    # nft identifiers: letters, digits, / - _ . (a ':' of IPv6 is not allowed).
    return re.sub(r"[^A-Za-z0-9/_.-]", "_", text)


def _family(svc: IpvsService) -> str:
    version = svc.address.version if svc.address is not None else svc.family
    return "ip6" if version == 6 else "ip"


def _addr(address: object, family: str) -> str:
    return f"[{address}]" if family == "ip6" else str(address)


def _slots(pairs: list[tuple[str, int]]) -> tuple[int, dict[tuple[int, int], str]]:
    """Consecutive slot intervals, one per (chain, weight); total slots."""
    elements: dict[tuple[int, int], str] = {}
    total = 0
    for chain, weight in pairs:
        if weight <= 0:
            continue
        elements[(total, total + weight - 1)] = chain
        total += weight
    return total, elements


def relayout(
    old: dict[tuple[int, int], str], weights: dict[str, int]
) -> dict[tuple[int, int], str]:
    """New slot intervals for ``weights`` that keep as many of ``old`` as
    possible: slots past the new total and a chain's surplus (taken from its
    last slots) are freed, and the holes go to the chains short of slots.  A
    one-server change then moves a few elements instead of shifting the
    intervals of every server after it (nft's interval handling is what
    costs, some 0.3 ms per element moved)."""
    total = sum(w for w in weights.values() if w > 0)
    kept: list[tuple[int, int, str]] = []
    count: dict[str, int] = {}
    for (a, b), chain in sorted(old.items()):
        if a >= total:
            continue
        b = min(b, total - 1)
        kept.append((a, b, chain))
        count[chain] = count.get(chain, 0) + b - a + 1
    out: dict[tuple[int, int], str] = {}
    for a, b, chain in reversed(kept):
        surplus = count[chain] - weights.get(chain, 0)
        if surplus > 0:
            cut = min(surplus, b - a + 1)
            b -= cut
            count[chain] -= cut
        if b >= a:
            out[(a, b)] = chain
    holes: list[tuple[int, int]] = []
    pos = 0
    for a, b in sorted(out):
        if a > pos:
            holes.append((pos, a - 1))
        pos = b + 1
    if pos < total:
        holes.append((pos, total - 1))
    short = [(c, w - count.get(c, 0)) for c, w in weights.items() if w - count.get(c, 0) > 0]
    for a, b in holes:
        while a <= b:
            chain, n = short[0]
            take = min(n, b - a + 1)
            out[(a, a + take - 1)] = chain
            a += take
            if take == n:
                short.pop(0)
            else:
                short[0] = (chain, n - take)
    return dict(sorted(out.items()))


class _Reporter:
    """Says each thing the backend cannot do once (per service and subject)."""

    def __init__(self) -> None:
        self._said: set[tuple[str, ...]] = set()

    def __call__(self, key: tuple[str, ...], level: int, msg: str, *args: object) -> None:
        if key in self._said:
            return
        self._said.add(key)
        log.log(level, msg, *args)


def render(svc: IpvsService, report: _Reporter | None = None) -> _Vs:
    """The nftables objects of one desired service."""
    say = report if report is not None else _Reporter()
    family = _family(svc)
    proto = svc.protocol.lower()
    if svc.fwmark is not None:
        name = f"fwm-{svc.fwmark}"
        mapname, key = "fwmarks", str(svc.fwmark)
    else:
        name = _safe(f"{proto}-{svc.address}-{svc.port or 0}")
        if svc.port:
            mapname, key = "services", f"{svc.address} . {proto} . {svc.port}"
        else:
            mapname, key = "anyport", f"{svc.address} . {proto}"
    label = svc.label
    affinity_key: str | None = None
    if svc.persistence_timeout is not None:
        affinity_key = f"{family} saddr"
        mask = _granularity(svc.persistence_granularity, family)
        if mask is not None:
            affinity_key += f" & {mask}"
        # Other persistence settings make another service (swapped in one
        # transaction), so a chain's rule never changes under its name.
        name += f"-p{svc.persistence_timeout}" + (f"-{_safe(mask)}" if mask else "")

    scheduler, why = closest_scheduler(svc.scheduler)
    if why is not None:
        say(
            (label, "sched", svc.scheduler),
            logging.WARNING,
            "nftables backend: VS %s: scheduler %s cannot be expressed in nftables (%s);"
            " using %s, the closest available%s",
            label,
            svc.scheduler,
            why,
            scheduler,
            " (weighted random)" if scheduler == "wrr" else "",
        )
    if svc.ops:
        say(
            (label, "ops"),
            logging.WARNING,
            "nftables backend: VS %s: ops (one-packet scheduling) is not supported;"
            " conntrack keeps each flow on one real server",
            label,
        )

    dests: list[tuple[IpvsDest, str]] = []
    for dest in svc.destinations:
        dlabel = f"[{dest.address}]:{dest.port}"
        if dest.forward is not Forward.NAT:
            say(
                (label, "fwd", dlabel),
                logging.ERROR,
                "nftables backend: VS %s: real server %s uses %s forwarding; the nftables"
                " backend does NAT only: real server not in the table",
                label,
                dlabel,
                dest.forward.value,
            )
            continue
        if dest.uthreshold or dest.lthreshold:
            say(
                (label, "thr", dlabel),
                logging.WARNING,
                "nftables backend: VS %s: real server %s: uthreshold/lthreshold are"
                " not supported (no connection counts); ignored",
                label,
                dlabel,
            )
        dests.append((dest, f"rs-{name}-{_safe(f'{dest.address}-{dest.port}')}"))

    reals: dict[str, str] = {}
    for dest, chain in dests:
        if dest.weight <= 0:
            continue
        to = _addr(dest.address, family)
        # Persistence, as kube-proxy's session affinity: the real server
        # remembers its client for persistence_timeout after each new connection.
        remember = f"update @{_aff(chain)} {{ {affinity_key} }} " if affinity_key else ""
        if dest.port:
            l4 = "{ tcp, udp, sctp }" if svc.fwmark is not None else proto
            reals[chain] = f"meta l4proto {l4} {remember}dnat to {to}:{dest.port}"
        else:
            reals[chain] = f"{remember}dnat to {dest.address}"  # port 0: keeps the client's port

    saddr = f"{family} saddr"
    seed = zlib.crc32(name.encode())
    weighted = [(chain, dest.weight) for dest, chain in dests if chain in reals]
    if scheduler in ("rr", "dh"):
        weighted = [(chain, 1) for chain, _ in weighted]  # these ignore weights in IPVS
    if scheduler == "fo" and weighted:
        best = max(weighted, key=lambda cw: cw[1])  # IPVS fo: the first of the heaviest
        weighted = [(best[0], 1)]
    total, elements = _slots(weighted)
    sel = f"@sel-{name}"
    if total == 0:
        # IPVS with no usable real server answers ICMP port unreachable.
        selector = "reject"
    elif scheduler == "sh":
        what = saddr
        if "sh-port" in svc.flags:
            what = f"{saddr} . th sport"
        selector = f"jhash {what} mod {total} seed 0x{seed:08x} vmap {sel}"
    elif scheduler == "dh":
        selector = f"jhash {family} daddr mod {total} seed 0x{seed:08x} vmap {sel}"
    elif why is None:  # rr, wrr, fo: IPVS's rotation as a counter
        selector = f"numgen inc mod {total} vmap {sel}"
    else:
        # Connection-count schedulers: weighted like wrr, but random, so that
        # bursts from many directors' clients do not march in step.
        selector = f"numgen random mod {total} vmap {sel}"
    # Only chains that a slot points at are kept.
    used = set(elements.values())
    reals = {c: r for c, r in reals.items() if c in used}
    weights = {chain: w for chain, w in weighted if w > 0}
    vs = _Vs(name, family, mapname, key, selector, elements, weights, reals)
    if affinity_key is not None:
        addr = "ipv4_addr" if family == "ip" else "ipv6_addr"
        vs.affinity_key = affinity_key
        vs.affinity_set = (
            f"type {addr}; flags dynamic,timeout; timeout {svc.persistence_timeout}s;"
            f" size {AFFINITY_SIZE};"
        )
    return vs


def _aff(chain: str) -> str:
    """The timed set of a real server's recent clients."""
    return "aff-" + chain.removeprefix("rs-")


def _granularity(text: str | None, family: str) -> str | None:
    """persistence_granularity as a mask for nft (None: whole addresses)."""
    if not text:
        return None
    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    try:
        if family == "ip":
            net = ipaddress.IPv4Network(f"0.0.0.0/{text}")
        else:
            net = ipaddress.IPv6Network(f"::/{text.lstrip('/')}")
    except ValueError:
        return None
    full = 32 if family == "ip" else 128
    return None if net.prefixlen == full else str(net.netmask)


def _table_script(family: str) -> list[str]:
    """The table's fixed part (maps and hooks), created in one block."""
    addr = "ipv4_addr" if family == "ip" else "ipv6_addr"
    match = [
        "meta mark vmap @fwmarks",
        f"{family} daddr . meta l4proto . th dport vmap @services",
        f"{family} daddr . meta l4proto vmap @anyport",
    ]
    lines = [
        f"table {family} {TABLE} {{",
        f"  map services {{ type {addr} . inet_proto . inet_service : verdict; }}",
        f"  map anyport {{ type {addr} . inet_proto : verdict; }}",
        "  map fwmarks { type mark : verdict; }",
    ]
    for hook in ("prerouting", "output"):
        lines.append(f"  chain {hook} {{")
        lines.append(f"    type nat hook {hook} priority -100; policy accept;")
        lines += [f"    {m}" for m in match]
        lines.append("  }")
    lines.append("}")
    return lines


def plan(installed: dict[str, _Vs], desired: dict[str, _Vs]) -> list[str]:
    """The ``nft -f`` lines that turn ``installed`` into ``desired`` (one
    family).  Order: create, fill, point the service maps at the new, then
    unhook and delete what left."""
    t = TABLE
    adds: list[str] = []
    maps: list[str] = []
    fills: list[str] = []
    hooks: list[str] = []
    unhooks: list[str] = []
    deletes: list[str] = []
    for name, want in desired.items():
        fam = want.family
        have = installed.get(name)
        if have is None:
            for chain, rule in want.reals.items():
                if want.affinity_key:
                    adds.append(f"add set {fam} {t} {_aff(chain)} {{ {want.affinity_set} }}")
                adds.append(f"add chain {fam} {t} {chain}")
                fills.append(f"add rule {fam} {t} {chain} {rule}")
            adds.append(f"add chain {fam} {t} vs-{name}")
            # After the chains its elements name: in one batch, a map added
            # before them cannot "goto" them (ENOENT, nft 1.0.6 / Linux 6.x).
            maps.append(
                f"add map {fam} {t} sel-{name} {{ typeof numgen inc mod 2 : verdict; flags interval; }}"
            )
            fills.append(f"add rule {fam} {t} vs-{name} {want.selector}")
            for chain in want.reals:
                if want.affinity_key:
                    fills.append(_affinity_rule(want, chain))
            if want.elements:
                fills.append(f"add element {fam} {t} sel-{name} {{ {_elems(want.elements)} }}")
            hooks.append(f"add element {fam} {t} {want.map} {{ {want.key} : goto vs-{name} }}")
            continue
        # A chain's name says its address, port and protocol: same name, same rule.
        for chain, rule in want.reals.items():
            if chain not in have.reals:
                if want.affinity_key:
                    adds.append(f"add set {fam} {t} {_aff(chain)} {{ {want.affinity_set} }}")
                    hooks.append(_affinity_rule(want, chain))
                adds.append(f"add chain {fam} {t} {chain}")
                fills.append(f"add rule {fam} {t} {chain} {rule}")
        want.elements = relayout(have.elements, want.weights)
        gone = {k: v for k, v in have.elements.items() if want.elements.get(k) != v}
        new = {k: v for k, v in want.elements.items() if have.elements.get(k) != v}
        if gone:
            unhooks.append(
                f"delete element {fam} {t} sel-{name} {{ {', '.join(map(_key, gone))} }}"
            )
        if new:
            hooks.append(f"add element {fam} {t} sel-{name} {{ {_elems(new)} }}")
        if want.selector != have.selector:
            assert have.handle is not None
            hooks.append(f"replace rule {fam} {t} vs-{name} handle {have.handle} {want.selector}")
        for chain in have.reals.keys() - want.reals.keys():
            handle = have.affinity_handles.get(chain)
            if handle is not None:
                unhooks.append(f"delete rule {fam} {t} vs-{name} handle {handle}")
            deletes.append(f"flush chain {fam} {t} {chain}")
            deletes.append(f"delete chain {fam} {t} {chain}")
            if have.affinity_key:
                deletes.append(f"delete set {fam} {t} {_aff(chain)}")
    for name, have in installed.items():
        if name in desired:
            continue
        fam = have.family
        unhooks.append(f"delete element {fam} {t} {have.map} {{ {have.key} }}")
        deletes.append(f"flush chain {fam} {t} vs-{name}")
        deletes.append(f"delete chain {fam} {t} vs-{name}")
        deletes.append(f"delete map {fam} {t} sel-{name}")
        for chain in have.reals:
            deletes.append(f"flush chain {fam} {t} {chain}")
            deletes.append(f"delete chain {fam} {t} {chain}")
            if have.affinity_key:
                deletes.append(f"delete set {fam} {t} {_aff(chain)}")
    # Elements leave before new ones of overlapping slots arrive.
    return adds + maps + fills + unhooks + hooks + deletes


def _affinity_rule(vs: _Vs, chain: str) -> str:
    # Inserted: the recent-client rules come before the selector rule.
    return f"insert rule {vs.family} {TABLE} vs-{vs.name} {vs.affinity_key} @{_aff(chain)} goto {chain}"


def _key(interval: tuple[int, int]) -> str:
    first, last = interval
    return f"{first}-{last}" if last > first else f"{first}"


def _elems(elements: dict[tuple[int, int], str]) -> str:
    return ", ".join(f"{_key(k)} : goto {v}" for k, v in elements.items())


_HANDLE = re.compile(r"^add rule (ip6?) \S+ vs-(\S+) .* # handle (\d+)\s*$")
_AFFINITY_HANDLE = re.compile(
    r"^insert rule (ip6?) \S+ vs-(\S+) .* @aff-\S+ goto (rs-\S+) # handle (\d+)\s*$"
)


# -- running nft ------------------------------------------------------------------------------


async def run_nft(args: Iterable[str], script: str | None = None) -> str:
    """Run ``nft`` with ``args`` (and ``script`` on stdin); its output.
    Raises :class:`NftError` with nft's own message on failure."""
    try:
        proc = await asyncio.create_subprocess_exec(
            NFT,
            *args,
            stdin=asyncio.subprocess.PIPE if script is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise NftError(f"cannot run {NFT}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(script.encode() if script is not None else None), NFT_TIMEOUT
        )
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise NftError(f"{NFT} did not finish within {NFT_TIMEOUT:g}s") from exc
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise NftError("; ".join(lines[:3]) or f"{NFT} exited with {proc.returncode}")
    return out.decode(errors="replace")


async def available() -> str | None:
    """None if nftables can be used here, else why not (one line)."""
    if shutil.which(NFT) is None:
        return f"no {NFT} command"
    try:
        await run_nft(["list", "tables"])
    except NftError as exc:
        return str(exc)
    return None


async def _leftover(family: str) -> list[str] | None:
    """The statements that empty our table left by an earlier run (a crash,
    a failed transaction), or None if there is none.

    The table is emptied, not deleted: when the last nat base chain of a
    family goes, the kernel unregisters its NAT hooks and the NAT state of
    established connections goes with it (they are reset; measured, Linux
    6.x).  So the base chains stay (their rules are rewritten) and
    everything else is deleted, in the transaction that installs the new
    table: established connections carry on."""
    try:
        out = await run_nft(["-j", "list", "table", family, TABLE])
    except NftError:
        return None
    try:
        objects = json.loads(out).get("nftables", [])
    except ValueError:
        return None
    t = f"{family} {TABLE}"
    base = [o["chain"]["name"] for o in objects if "chain" in o and "hook" in o["chain"]]
    other = [o["chain"]["name"] for o in objects if "chain" in o and "hook" not in o["chain"]]
    sets = [(k, o[k]["name"]) for o in objects for k in ("map", "set") if k in o]
    # Rules first (they reference the maps), then the maps (their elements
    # reference the chains), then the chains.
    lines = [f"flush chain {t} {c}" for c in base + other]
    lines += [f"delete {kind} {t} {name}" for kind, name in sets]
    lines += [f"delete chain {t} {c}" for c in other]
    return lines


@dataclass
class NftApplyResult:
    """What one :meth:`NftBackend.apply` did (for logs, status and tests)."""

    lines: int = 0  # nft statements sent
    seconds: float = 0.0
    skipped: bool = False
    error: str | None = None


class NftBackend:
    """Serves the desired virtual-server table with nftables (module doc).

    Same face as the IPVS backend: ``start``, ``apply``, ``stop``.  The
    first apply takes over a leftover table of an earlier run (emptied and
    refilled in one transaction, its hook chains kept: see
    :func:`_leftover`); ``stop`` deletes the tables.
    """

    kind = "nftables"

    def __init__(self) -> None:
        self.installed: dict[str, dict[str, _Vs]] = {}  # family -> name -> objects
        self.last: NftApplyResult | None = None
        self._fresh: set[str] = {"ip", "ip6"}  # families to (re)create at next apply
        self._report = _Reporter()
        self._lock = asyncio.Lock()
        self._generation = 0

    async def start(self) -> None:
        return None

    async def apply(self, services: list[IpvsService]) -> NftApplyResult:
        """Make our tables serve exactly ``services``.  A failed transaction
        changes nothing; it is logged and the next apply rebuilds the table
        in one transaction.  Raises :class:`NftError` on failure."""
        self._generation += 1
        generation = self._generation
        desired: dict[str, dict[str, _Vs]] = {"ip": {}, "ip6": {}}
        for svc in services:
            vs = render(svc, self._report)
            desired[vs.family].setdefault(vs.name, vs)
        async with self._lock:
            if generation != self._generation:
                return NftApplyResult(skipped=True)
            result = await self._apply(desired)
        self.last = result
        if result.error is not None:
            raise NftError(result.error)
        return result

    async def _apply(self, desired: dict[str, dict[str, _Vs]]) -> NftApplyResult:
        lines: list[str] = []
        for family, want in desired.items():
            have = self.installed.get(family)
            if family in self._fresh:
                have = None
                leftover = await _leftover(family)
                if leftover is not None and want:
                    lines += leftover
                elif leftover is not None:
                    lines.append(f"delete table {family} {TABLE}")
            if have is None:
                if not want:
                    continue  # no table of this family needed
                lines += _table_script(family)
                have = {}
            lines += plan(have, want)
        result = NftApplyResult(lines=len(lines))
        if not lines:
            return result
        started = time.monotonic()
        try:
            # Echo with handles (-e -a) only when a selector rule is written:
            # it is all we need handles for, and echo costs time.
            echo = any(" rule " in line and " vs-" in line for line in lines)
            flags = ["-e", "-a", "-f", "-"] if echo else ["-f", "-"]
            out = await run_nft(flags, "\n".join(lines) + "\n")
        except NftError as exc:
            log.error("nftables backend: update failed: %s", exc)
            self._fresh = {"ip", "ip6"}
            self.installed.clear()
            result.error = str(exc)
            return result
        result.seconds = time.monotonic() - started
        handles: dict[tuple[str, str], int] = {}
        affinity: dict[tuple[str, str], dict[str, int]] = {}
        for line in out.splitlines():
            m = _HANDLE.match(line)
            if m:
                handles[(m.group(1), m.group(2))] = int(m.group(3))
            m = _AFFINITY_HANDLE.match(line)
            if m:
                affinity.setdefault((m.group(1), m.group(2)), {})[m.group(3)] = int(m.group(4))
        for family, want in desired.items():
            if family in self._fresh:
                self._fresh.discard(family)
                have = {} if want else None
            else:
                have = self.installed.get(family)
            if have is None and not want:
                self.installed.pop(family, None)
                continue
            for name, vs in want.items():
                old = (have or {}).get(name)
                vs.handle = handles.get((family, name), old.handle if old else None)
                kept = old.affinity_handles if old else {}
                vs.affinity_handles = {
                    c: h for c, h in kept.items() if c in vs.reals
                } | affinity.get((family, name), {})
            self.installed[family] = want
        log.debug("nftables backend: %d statements in %.3fs", len(lines), result.seconds)
        return result

    async def stop(self) -> None:
        """Delete our tables (keepalived removes its virtual servers at stop).
        Never raises."""
        self._generation += 1
        async with self._lock:
            families = set(self.installed) | {"ip", "ip6"}
            lines: list[str] = []
            for family in sorted(families):
                lines += [f"add table {family} {TABLE}", f"delete table {family} {TABLE}"]
            try:
                await run_nft(["-f", "-"], "\n".join(lines) + "\n")
            except NftError as exc:
                log.error("nftables backend: cannot remove the tables at shutdown: %s", exc)
            self.installed.clear()
            self._fresh = {"ip", "ip6"}
