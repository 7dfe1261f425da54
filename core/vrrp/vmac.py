"""``use_vmac``: a macvlan interface carrying a VRRP instance's virtual MAC.

What keepalived 2.2.7 does, and so what this module does (its source,
``vrrp_vmac.c`` / ``vrrp_if_config.c``, and ``ip -d link`` / ``sysctl`` in a
namespace lab running it):

* The interface is a macvlan in **private** mode on the instance's
  ``interface``, with the RFC 5798 virtual router MAC ``00:00:5e:00:01:VRID``
  (IPv4) or ``00:00:5e:00:02:VRID`` (IPv6), or the MAC given to ``use_vmac``.
  Private mode matters: the peer router's VMAC has the same MAC, and the
  kernel's macvlan driver then hands frames coming from that MAC to our VMAC
  (it takes them for our own reflected frames) instead of to the base
  interface, so adverts must be read on the VMAC.
* Its name is the one given to ``use_vmac``, else ``vrrp.VRID`` (if taken:
  ``vrrp1.VRID``, ``vrrp2.VRID``, ...; IPv6 tries ``vrrp6.VRID`` second).
  A private macvlan already on the base interface with the right MAC is
  adopted whatever its name ("Found matching interface"), so a restart
  after a crash reuses the VMAC left behind.
* It is created with IPv6 address generation off (``addrgenmode none``: no
  EUI-64 link-local from the virtual MAC, RFC 5798 7.4) and brought up at
  once; it stays up in every VRRP state (only the VIPs come and go) and is
  deleted when the instance stops (shutdown, or removed by a reload).
* IPv4 instance: sysctls ``arp_ignore=1``, ``accept_local=1``,
  ``rp_filter=0``, ``promote_secondaries=1`` and ``disable_ipv6=1`` on the
  VMAC; ``arp_ignore=1``, ``arp_filter=1`` on the base interface (so that
  only the VMAC answers ARP for the VIPs, with the virtual MAC).  As
  ``rp_filter`` is the max of ``all`` and the interface's value, a non-zero
  ``all.rp_filter`` is moved onto ``default`` and every interface and
  ``all`` is set to 0, with keepalived's NOTICE lines; restored at shutdown.
* IPv6 instance: ``disable_ipv6=0``; unless ``vmac_xmit_base``, the base
  interface's link-local address (or the EUI-64 one from the base MAC) is
  added to the VMAC, ``nodad`` and deprecated (preferred_lft 0), as the
  source of the adverts sent there.

* IGMP (IPv4) or MLD (IPv6) reports the kernel sends from a VMAC when the
  VRRP socket joins the advert group would teach the switches that the
  virtual MAC lives on a *backup*: as keepalived (without a firewall
  configured, it uses nftables), an nftables table sends them out of the
  base interface instead and drops router solicitations from the VMAC::

      table ip pykeepalived {            # keepalived: table ip keepalived
          map vmac_map { type iface_index : iface_index; ... }
          chain out {
              type filter hook output priority filter - 1; policy accept;
              ip protocol igmp meta oifkind "macvlan"
                  dup to ip daddr device oif map @vmac_map drop
          }
      }

  (``table ip6 pykeepalived`` likewise for MLDv2 reports, plus a set of
  VMACs whose router solicitations are dropped.)  It is made with the
  ``nft`` command; without it the reports leave with the virtual MAC, and a
  warning says so.

Difference: keepalived 2.2.7 leaves the base interface's
``arp_ignore``/``arp_filter`` at 1 after removing the VMAC (measured);
pykeepalived restores the values it found.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pykeepalived.core.config.model import VrrpInstance
from pykeepalived.core.vrrp.effects import IFA_F_NODAD, Netlink, run_nft
from pykeepalived.core.vrrp.rtnl import (
    IN6_ADDR_GEN_MODE_NONE,
    MACVLAN_MODE_PRIVATE,
    LinkInfo,
    RtnlError,
)

log = logging.getLogger("pykeepalived.vrrp")

#: RFC 5798 7.3: 00-00-5E-00-01-{VRID} (IPv4), 00-00-5E-00-02-{VRID} (IPv6).
VRRP_MAC_PREFIX = bytes((0x00, 0x00, 0x5E, 0x00))
DEFAULT_PREFIX = "vrrp"
IFNAMSIZ = 16
SYSCTL = Path("/proc/sys/net")
#: Where ``use_vmac``'s MAC address argument is kept (``VrrpInstance.ext``).
EXT_MAC = "use_vmac_mac"
NFT_TABLE = "pykeepalived"
_NFT_RULESETS = {
    4: """table ip {t} {{
    map vmac_map {{ type iface_index : iface_index; }}
    chain out {{
        type filter hook output priority filter - 1; policy accept;
        ip protocol igmp meta oifkind "macvlan" dup to ip daddr device oif map @vmac_map drop
    }}
}}
""",
    6: """table ip6 {t} {{
    map vmac_map {{ type iface_index : iface_index; }}
    set vmac_set {{ type iface_index; }}
    chain out {{
        type filter hook output priority filter - 1; policy accept;
        icmpv6 type mld2-listener-report meta oifkind "macvlan" \\
            dup to ip6 daddr device oif map @vmac_map drop
        icmpv6 type nd-router-solicit meta oifkind "macvlan" oif @vmac_set drop
    }}
}}
""",
}


def virtual_mac(vrid: int, family: int) -> bytes:
    """The RFC 5798 virtual router MAC of ``vrid`` for ``family`` (4 or 6)."""
    return VRRP_MAC_PREFIX + bytes((0x02 if family == 6 else 0x01, vrid & 0xFF))


def configured_mac(cfg: VrrpInstance) -> bytes:
    """The VMAC's MAC: ``use_vmac``'s MAC argument (5 octets: the VRID is
    the sixth) or the RFC 5798 one."""
    vrid = cfg.virtual_router_id or 0
    text = cfg.ext.get(EXT_MAC)
    if isinstance(text, str) and text:
        octets = bytes(int(p, 16) for p in text.split(":") if p)
        return octets if len(octets) == 6 else octets[:5] + bytes((vrid & 0xFF,))
    return virtual_mac(vrid, cfg.family)


def name_candidates(vrid: int, family: int, prefix: str = DEFAULT_PREFIX) -> Iterable[str]:
    """keepalived's generated VMAC names, in the order it tries them."""

    def fit(num: str) -> str:
        name = f"{prefix}{num}.{vrid}"
        if len(name) >= IFNAMSIZ:  # shorten the prefix, keep number and VRID
            keep = len(prefix) - (len(name) - IFNAMSIZ) - 1
            name = f"{prefix[:keep]}{num}.{vrid}"
        return name

    yield fit("")
    numbers = [6, 1, 2, 3, 4, 5] if family == 6 else [1, 2, 3, 4, 5, 6]
    yield from (fit(str(n)) for n in numbers)
    yield from (fit(str(n)) for n in range(7, 1000))


def link_local_eui64(mac: bytes) -> str:
    """fe80::/64 address derived from ``mac`` (modified EUI-64, RFC 4291)."""
    iid = bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


@dataclass
class Vmac:
    """One VMAC interface in use by an instance."""

    name: str
    index: int
    base: str
    base_index: int
    mac: bytes
    family: int


def _read_sysctl(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _write_sysctl(path: Path, value: int) -> bool:
    try:
        path.write_text(f"{value}\n")
    except OSError as exc:
        log.warning("cannot set %s to %d: %s", path, value, exc)
        return False
    return True


class VmacManager:
    """Creates, adopts and removes the VMAC interfaces of the VRRP instances
    and keeps the interface settings they need (see the module docstring).

    Everything here is a few netlink requests or ``/proc/sys`` writes, done
    when an instance starts or stops; nothing waits on the network.
    """

    def __init__(self, netlink: Netlink, sysctl: Path = SYSCTL) -> None:
        self.netlink = netlink
        self.sysctl = sysctl
        #: name -> instance, for every VMAC we hold.
        self.owners: dict[str, str] = {}
        #: base interface -> (VMACs on it, {sysctl: value we replaced}).
        self._base_conf: dict[str, tuple[int, dict[str, int]]] = {}
        #: all.rp_filter as found (None: we did not change it).
        self._all_rp_filter: int | None = None
        self._rp_filter_saved: dict[str, int] = {}
        #: Families whose nftables table we made.
        self._nft_tables: set[int] = set()
        self._nft_warned = False

    # -- creation ---------------------------------------------------------------
    def create(self, cfg: VrrpInstance) -> Vmac | None:
        """Create (or adopt) the VMAC of ``cfg``; None, logged, if impossible."""
        name = cfg.name
        base = cfg.interface or ""
        rtnl = self.netlink.rtnl
        base_index = self.netlink.ifindex(base)
        if base_index is None:
            log.error("(%s) interface %s does not exist; no VMAC", name, base)
            return None
        family = cfg.family
        mac = configured_mac(cfg)
        wanted = cfg.use_vmac if isinstance(cfg.use_vmac, str) else None
        try:
            links = rtnl.get_links()
        except OSError as exc:
            log.error("(%s) cannot list interfaces: %s", name, exc)
            return None
        by_name = {link.name: link for link in links}
        vmac_name: str | None = None
        existing: LinkInfo | None = None
        for link in links:
            if (
                link.kind == "macvlan"
                and link.link == base_index
                and link.macvlan_mode == MACVLAN_MODE_PRIVATE
                and link.mac == mac
                and link.name not in self.owners
            ):
                log.info("(%s) Found matching interface %s", name, link.name)
                if wanted is not None and wanted != link.name:
                    log.info(
                        "(%s) vmac name mismatch %s <=> %s. changing to %s.",
                        name,
                        wanted,
                        link.name,
                        link.name,
                    )
                vmac_name, existing = link.name, link
                break
        if vmac_name is None and wanted is not None:
            other = by_name.get(wanted)
            if wanted in self.owners:
                log.error(
                    "(%s) VRRP instance %s is already using %s - ignoring name",
                    name,
                    self.owners[wanted],
                    wanted,
                )
            elif other is None:
                vmac_name = wanted
            elif other.kind == "macvlan" and other.macvlan_mode == MACVLAN_MODE_PRIVATE:
                vmac_name = wanted
                if other.link != base_index:
                    log.info(
                        "(%s) Removing old VMAC interface %s due to conflicting interface",
                        name,
                        wanted,
                    )
                    try:
                        rtnl.del_link(other.index)
                    except OSError as exc:
                        log.error("(%s) Error removing VMAC interface %s: %s", name, wanted, exc)
                        return None
                else:
                    log.info(
                        "(%s) Update old VMAC interface %s due to wrong MAC/mode ", name, wanted
                    )
                    existing = other
            else:
                log.error(
                    "(%s) interface %s already exists and is not a private macvlan;"
                    " ignoring vmac if_name",
                    name,
                    wanted,
                )
        if vmac_name is None:
            vmac_name = next(
                n
                for n in name_candidates(cfg.virtual_router_id or 0, family)
                if n not in by_name and n not in self.owners
            )
        try:
            if existing is None:
                rtnl.add_macvlan(vmac_name, base_index, mac, MACVLAN_MODE_PRIVATE)
                log.debug("(%s): Success creating VMAC interface %s", name, vmac_name)
            elif existing.mac != mac:
                rtnl.change_macvlan(existing.index, mac, MACVLAN_MODE_PRIVATE)
                log.debug("(%s): Success updating VMAC interface %s", name, vmac_name)
        except OSError as exc:
            log.error("(%s): Unable to create VMAC interface %s: %s", name, vmac_name, exc)
            return None
        index = self.netlink.ifindex(vmac_name)
        if index is None:
            log.error("(%s): VMAC interface %s vanished", name, vmac_name)
            return None
        vmac = Vmac(vmac_name, index, base, base_index, mac, family)
        self.owners[vmac_name] = name
        # Before the VMAC comes up and joins any group.
        self._nft_add(vmac)
        try:
            self._configure(cfg, vmac)
        except OSError as exc:
            log.error("(%s) cannot set up VMAC interface %s: %s", name, vmac_name, exc)
            self.remove(vmac, name)
            return None
        return vmac

    def _configure(self, cfg: VrrpInstance, vmac: Vmac) -> None:
        rtnl = self.netlink.rtnl
        if vmac.family == 4:
            self._clear_rp_filter()
            for key, value in (
                ("arp_ignore", 1),
                ("accept_local", 1),
                ("rp_filter", 0),
                ("promote_secondaries", 1),
            ):
                _write_sysctl(self._conf(vmac.name, key), value)
            self._base_settings(vmac.base)
        # IPv6 runs on the VMAC only for an IPv6 instance, or for an IPv4 one
        # with IPv6 eVIPs (keepalived's VRRP_FLAG_EVIP_OTHER_FAMILY).
        other = any(v.address.version != vmac.family for v in cfg.virtual_ipaddress_excluded)
        disable6 = vmac.family == 4 and not other
        _write_sysctl(self.sysctl / "ipv6" / "conf" / vmac.name / "disable_ipv6", int(disable6))
        # addr_gen_mode before the link comes up, else the kernel has already
        # added an EUI-64 link-local address made from the virtual MAC.
        try:
            rtnl.set_link(vmac.index, addr_gen_mode=IN6_ADDR_GEN_MODE_NONE)
        except RtnlError as exc:
            log.info("(%s) Error setting ADDR_GEN_MODE to NONE on %s", cfg.name, vmac.name)
            if exc.code not in (errno.EAFNOSUPPORT, errno.EOPNOTSUPP):
                raise
        rtnl.set_link(vmac.index, up=True)
        if vmac.family == 6 and not cfg.vmac_xmit_base:
            self._add_link_local(cfg, vmac)

    def _add_link_local(self, cfg: VrrpInstance, vmac: Vmac) -> None:
        """The advert source on the VMAC: the base's link-local address."""
        if cfg.mcast_src_ip is not None and cfg.mcast_src_ip.version == 6:
            address = str(cfg.mcast_src_ip)
        else:
            address = self.netlink.primary_address(vmac.base, 6) or ""
            if not address:
                base_mac = self.netlink.mac(vmac.base)
                if base_mac is None or len(base_mac) != 6:
                    log.info("(%s) adding link-local address to %s failed", cfg.name, vmac.name)
                    return
                address = link_local_eui64(base_mac)
        try:
            self.netlink.rtnl.add_address(
                vmac.index, address, 64, flags=IFA_F_NODAD, preferred_lft=0
            )
        except RtnlError as exc:
            if exc.code != errno.EEXIST:
                log.info("(%s) adding link-local address to %s failed", cfg.name, vmac.name)

    def _conf(self, dev: str, key: str) -> Path:
        return self.sysctl / "ipv4" / "conf" / dev / key

    def _base_settings(self, base: str) -> None:
        """arp_ignore=1, arp_filter=1 on the base while a VMAC is on it."""
        count, saved = self._base_conf.get(base, (0, {}))
        if count == 0:
            saved = {}
            for key in ("arp_ignore", "arp_filter"):
                value = _read_sysctl(self._conf(base, key))
                if value is not None and value != 1 and _write_sysctl(self._conf(base, key), 1):
                    saved[key] = value
        self._base_conf[base] = (count + 1, saved)

    def _clear_rp_filter(self) -> None:
        """rp_filter=0 on a VMAC needs all.rp_filter=0: move a non-zero
        all.rp_filter onto default and onto every interface (keepalived's
        clear_rp_filter), once."""
        if self._all_rp_filter is not None:
            return
        conf = self.sysctl / "ipv4" / "conf"
        all_rp = _read_sysctl(conf / "all" / "rp_filter")
        if all_rp is None:
            log.info("Unable to read sysctl net.ipv4.conf.all.rp_filter")
            return
        if all_rp == 0:
            return
        self._all_rp_filter = all_rp
        default_rp = _read_sysctl(conf / "default" / "rp_filter")
        if default_rp is not None and default_rp < all_rp:
            log.info(
                "NOTICE: setting sysctl net.ipv4.conf.default.rp_filter from %d to %d",
                default_rp,
                all_rp,
            )
            _write_sysctl(conf / "default" / "rp_filter", all_rp)
            self._rp_filter_saved["default"] = default_rp
        try:
            devices = sorted(p.name for p in conf.iterdir() if p.name not in ("all", "default"))
        except OSError:
            devices = []
        for dev in devices:
            value = _read_sysctl(conf / dev / "rp_filter")
            if value is not None and value < all_rp:
                _write_sysctl(conf / dev / "rp_filter", all_rp)
                self._rp_filter_saved[dev] = value
        log.info("NOTICE: setting sysctl net.ipv4.conf.all.rp_filter from %d to 0", all_rp)
        _write_sysctl(conf / "all" / "rp_filter", 0)

    def _restore_rp_filter(self) -> None:
        """Put back what :meth:`_clear_rp_filter` changed, where nobody else
        changed it since (keepalived's restore_rp_filter)."""
        all_rp = self._all_rp_filter
        if all_rp is None:
            return
        conf = self.sysctl / "ipv4" / "conf"
        if _read_sysctl(conf / "all" / "rp_filter") == 0:
            log.info("NOTICE: resetting sysctl net.ipv4.conf.all.rp_filter to %d", all_rp)
            _write_sysctl(conf / "all" / "rp_filter", all_rp)
        for dev, value in self._rp_filter_saved.items():
            if _read_sysctl(conf / dev / "rp_filter") == all_rp:
                if dev == "default":
                    log.info(
                        "NOTICE: resetting sysctl net.ipv4.conf.default.rp_filter to %d", value
                    )
                _write_sysctl(conf / dev / "rp_filter", value)
        self._all_rp_filter = None
        self._rp_filter_saved = {}

    # -- nftables: IGMP/MLD reports leave by the base interface ---------------------
    def _nft(self, script: str) -> bool:
        done = run_nft(script)
        if done is None:
            if not self._nft_warned:
                self._nft_warned = True
                log.warning(
                    "nft not found: IGMP/MLD reports of VMAC interfaces leave with the virtual MAC"
                )
            return False
        return done

    def _nft_add(self, vmac: Vmac) -> None:
        fam = "ip" if vmac.family == 4 else "ip6"
        script = ""
        if vmac.family not in self._nft_tables:
            # Replace whatever a crashed run left behind, in one transaction.
            script += f"add table {fam} {NFT_TABLE}\ndelete table {fam} {NFT_TABLE}\n"
            script += _NFT_RULESETS[vmac.family].format(t=NFT_TABLE)
        script += f'add element {fam} {NFT_TABLE} vmac_map {{ "{vmac.name}" : "{vmac.base}" }}\n'
        if vmac.family == 6:
            script += f'add element {fam} {NFT_TABLE} vmac_set {{ "{vmac.name}" }}\n'
        if self._nft(script):
            self._nft_tables.add(vmac.family)

    # -- removal ------------------------------------------------------------------
    def remove(self, vmac: Vmac, instance: str) -> None:
        """Delete ``vmac`` and give the base interface its settings back."""
        if self.owners.pop(vmac.name, None) is None:
            return
        # Its nftables entries stay until shutdown: the kernel may still send
        # a report (leaving the group) just before the link goes, and an
        # entry for an interface index that no longer exists is inert.
        if vmac.family == 4:
            self._release_base(vmac.base)
        self.netlink.forget_device(vmac.name)
        index = self.netlink.ifindex(vmac.name)
        if index is None:
            return
        try:
            self.netlink.rtnl.del_link(index)
        except RtnlError as exc:
            if exc.code != errno.ENODEV:
                log.info("(%s) Error removing VMAC interface %s", instance, vmac.name)
            return
        except OSError:
            log.info("(%s) Error removing VMAC interface %s", instance, vmac.name)
            return
        log.debug("(%s) Success removing VMAC interface %s", instance, vmac.name)

    def _release_base(self, base: str) -> None:
        count, saved = self._base_conf.get(base, (0, {}))
        if count <= 1:
            self._base_conf.pop(base, None)
            for key, value in saved.items():
                _write_sysctl(self._conf(base, key), value)
        else:
            self._base_conf[base] = (count - 1, saved)

    def close(self) -> None:
        """Shutdown, after the instances removed their VMACs: the rp_filter
        settings go back and the nftables tables go."""
        self._restore_rp_filter()
        for family in sorted(self._nft_tables):
            self._nft(f"delete table {'ip' if family == 4 else 'ip6'} {NFT_TABLE}\n")
        self._nft_tables.clear()
