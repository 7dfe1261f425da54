"""keepalived's per-instance VRRP statistics: the counters ``SIGUSR2``
(``keepalived.stats``) and the JSON signal (``keepalived.json``) print.

Names and meanings are keepalived 2.2.7's (``vrrp_stats`` in vrrp.h, counted
in vrrp.c).  What keepalived counts where, and so what this module tells the
instance to count:

* ``advert_rcvd`` counts an advert only once it has passed the checks of
  length, TTL, version, authentication, interval, type, address count,
  checksum and multicast/unicast destination; an advert rejected later (a
  VIP missing from it, a unicast source that is not a peer, a unicast TTL
  out of range) has been counted already.
* ``advert_sent`` counts every advert sent, priority 0 included;
  ``pri_zero_sent`` those with priority 0, ``pri_zero_rcvd`` the received
  (and counted) ones with priority 0.
* ``become_master`` / ``release_master`` count entering and leaving MASTER.
* ``advert_interval_err`` is printed but never incremented by keepalived
  2.2.7 (an interval mismatch is dropped silently); it stays 0 here too.
* ``STATS_CLEAR`` zeroes them all (keepalived ``memset``\\ s the structure).
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from pykeepalived.core.vrrp import packet as pk

#: In keepalived's JSON order (vrrp_json.c ``vrrp_json_stats_dump``).
STATS_FIELDS: Final[tuple[str, ...]] = (
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

#: Rejections keepalived makes after it has counted the advert as received
#: (tested member by member in :func:`count_rejection`).
_AFTER_COUNT: Final = frozenset(
    {
        pk.Rejection.VIP_MISSING,
        pk.Rejection.UNICAST_SRC_NOT_PEER,
        pk.Rejection.UNICAST_TTL_RANGE,
    }
)


def count_rejection(stats: Counter[str], rejection: pk.Rejection) -> None:
    """An advert ``rejection`` made: bump what keepalived bumps."""
    if rejection.counter:
        stats[rejection.counter] += 1
    # Identity tests, not ``in _AFTER_COUNT``: hashing an Enum member runs
    # Python code, a noticeable share of a dropped packet's cost.
    if (
        rejection is pk.Rejection.VIP_MISSING
        or rejection is pk.Rejection.UNICAST_SRC_NOT_PEER
        or rejection is pk.Rejection.UNICAST_TTL_RANGE
    ):
        stats["advert_rcvd"] += 1


def count_decode_error(stats: Counter[str], error: pk.PacketError) -> None:
    """A packet that did not even decode as VRRP."""
    count_decode_kind(stats, error.kind)


def count_decode_kind(stats: Counter[str], kind: pk.PacketErrorKind) -> None:
    """As :func:`count_decode_error`, from the error's kind alone
    (keepalived's exact length check covers a truncated header too)."""
    if kind is pk.PacketErrorKind.TRUNCATED or kind is pk.PacketErrorKind.LENGTH_MISMATCH:
        stats["packet_len_err"] += 1
    elif kind is pk.PacketErrorKind.BAD_TYPE:
        stats["invalid_type_rcvd"] += 1


def count_accepted(stats: Counter[str], priority: int, n: int = 1) -> None:
    """``n`` adverts with ``priority`` passed every check."""
    stats["advert_rcvd"] += n
    if priority == 0:
        stats["pri_zero_rcvd"] += n


def as_dict(stats: Counter[str]) -> dict[str, int]:
    """Every keepalived counter, zeros included, in keepalived's order."""
    return {name: int(stats[name]) for name in STATS_FIELDS}
