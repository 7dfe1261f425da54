"""The model as JSON (``--dump-conf-json``) and as text (``-d``)."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
from typing import Any

from pykeepalived.core.config.errors import Place

#: Shown as *** unless --show-secrets: VRRP auth (and auth_hmac keys), SMTP
#: AUTH, the key password of the checkers' SSL block (``-d`` logs the dump).
SECRET_FIELDS = frozenset({"auth_pass", "smtp_password", "password", "secret"})


def to_jsonable(obj: Any, *, secrets: bool = False) -> Any:
    if isinstance(obj, Place):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name in SECRET_FIELDS and value and not secrets:
                out[f.name] = "***"
            else:
                out[f.name] = to_jsonable(value, secrets=secrets)
        return out
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, secrets=secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v, secrets=secrets) for v in obj]
    if isinstance(obj, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(obj)
    if isinstance(obj, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return obj.with_prefixlen
    if isinstance(obj, bytes):
        return "hex:" + obj.hex()  # auth_hmac keys, as keepalived.conf writes them
    if isinstance(obj, enum.Enum):
        return obj.value
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def dump_json(obj: Any, *, secrets: bool = False) -> str:
    return json.dumps(to_jsonable(obj, secrets=secrets), indent=2, sort_keys=False)
