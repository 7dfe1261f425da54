"""smtp_alert against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pluggy
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pykeepalived.core.config.model import Config
from pykeepalived.core.events import EventDispatcher
from pykeepalived.core.labels import lvs_subject_name
from pykeepalived.core.plugin import hookspecs
from pykeepalived.core.plugin.base import EventKind, StateEvent
from pykeepalived.core.plugin.manager import PluginRegistry
from pykeepalived.plugins.notify.smtp import SmtpNotifier
from pykeepalived.testing import load_text

SECRET = "s3cr3t-Pa55"


class Sink:
    def __init__(self) -> None:
        self.mails: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "helo": session.host_name,
                "subject": str(msg["Subject"]),
                "body": msg.get_content().strip(),
                "msg": msg,
                "login": getattr(session, "login_data", None),
            }
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtpd() -> Iterator[tuple[Sink, int]]:
    sink = Sink()

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == b"ka"
            and data.password == SECRET.encode()
        )
        return AuthResult(success=ok, handled=False)

    port = _free_port()
    ctl = Controller(
        sink, hostname="127.0.0.1", port=port, authenticator=auth, auth_require_tls=False
    )
    ctl.start()
    try:
        yield sink, port
    finally:
        ctl.stop()


def registry() -> PluginRegistry:
    pm = pluggy.PluginManager("pykeepalived")
    pm.add_hookspecs(hookspecs)
    return PluginRegistry(pm, notifiers={"smtp": SmtpNotifier})


def config(port: int, extra: str = "", instance_extra: str = "smtp_alert") -> Config:
    res = load_text(f"""
global_defs {{
    router_id LB_A
    notification_email {{
        ops@example.org
        "Admin <admin@example.org>"
    }}
    notification_email_from "Keepalived <ka@example.org>"
    smtp_server 127.0.0.1 {port}
    smtp_connect_timeout 2
    smtp_helo_name lb-a.example.org
    {extra}
}}
vrrp_sync_group G1 {{
    group {{ VI_1 }}
    smtp_alert
}}
vrrp_instance VI_1 {{
    interface lo
    virtual_router_id 51
    virtual_ipaddress {{ 192.0.2.100/24 }}
    {instance_extra}
}}
vrrp_instance VI_2 {{
    interface lo
    virtual_router_id 52
    virtual_ipaddress {{ 192.0.2.101/24 }}
}}
virtual_server 192.0.2.100 80 {{
    protocol TCP
    lb_algo wlc
    smtp_alert
    real_server 192.0.2.21 80 {{ weight 1 }}
}}
""")
    assert res.ok, [str(d) for d in res.diagnostics.errors]
    return res.config


def test_no_email_faults_silences_vrrp_fault_mails_only() -> None:
    def wants(extra: str, kind: EventKind, name: str, state: str) -> bool:
        cfg = config(25, extra)
        notifier = SmtpNotifier(cfg)
        return notifier.wants(StateEvent(kind, name, state, subject=_subject(cfg, kind, name)))

    for kind, name in ((EventKind.INSTANCE, "VI_1"), (EventKind.GROUP, "G1")):
        assert wants("", kind, name, "FAULT")
        assert not wants("no_email_faults", kind, name, "FAULT")
        assert wants("no_email_faults", kind, name, "MASTER")


def _subject(cfg: Config, kind: EventKind, name: str) -> Any:
    if kind is EventKind.INSTANCE:
        return cfg.instance(name)
    return next(g for g in cfg.vrrp_sync_groups if g.name == name)


async def test_alerts_with_keepalived_subjects(smtpd: tuple[Sink, int]) -> None:
    sink, port = smtpd
    cfg = config(port)
    vs = cfg.virtual_servers[0]
    rs = vs.real_servers[0]
    d = EventDispatcher(cfg, registry(), "LB_A")
    t0 = time.monotonic()
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    d.emit(
        StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100)
    )  # same state: no 2nd mail
    d.emit(StateEvent(EventKind.INSTANCE, "VI_2", "MASTER", priority=100))  # no smtp_alert
    # emit queues; the mail goes out later, on the dispatcher's task.  The sink runs in
    # its own thread, so a blocking send inside emit would already show there.  (The
    # bound is 10x what emit takes, "did not block"; bench/micro measures it.)
    assert sink.mails == []
    assert time.monotonic() - t0 < 0.5
    await d.wait_idle(timeout=20)
    d.emit(StateEvent(EventKind.GROUP, "G1", "BACKUP"))
    await d.wait_idle(timeout=20)
    d.emit(
        StateEvent(
            EventKind.REAL_SERVER,
            lvs_subject_name(rs, vs),
            "DOWN",
            real_server=rs,
            virtual_server=vs,
            detail="=> TCP CHECK failed on service <=",
        )
    )
    await d.wait_idle(timeout=20)
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "BACKUP", priority=100))
    await d.wait_idle(timeout=20)
    # Where these come from: keepalived 2.2.7's source (core/smtp.c:610-642 subjects,
    # vrrp/vrrp_notify.c:203-245 VRRP bodies, check/check_tcp.c:131 the checker's body;
    # include/smtp.h:104 the X-Mailer header).  The VRRP instance subjects, envelope and
    # headers are also checked against a running keepalived in tests/test_e2e_notify.py
    # (test_failover_notifies_scripts_fifo_and_mail[keepalived]).
    subjects = [m["subject"] for m in sink.mails]
    assert subjects == [
        "[LB_A] VRRP Instance VI_1 - Entering MASTER state",
        "[LB_A] VRRP Group G1 - Entering BACKUP state",
        "[LB_A] Realserver [192.0.2.21]:tcp:80 of virtual server [192.0.2.100]:tcp:80 - DOWN",
        "[LB_A] VRRP Instance VI_1 - Entering BACKUP state",
    ]
    bodies = [m["body"] for m in sink.mails]
    assert bodies == [
        "=> VRRP Instance is now owning VRRP VIPs <=",
        "=> All VRRP group instances are now in BACKUP state <=",
        "=> TCP CHECK failed on service <=",
        "=> VRRP Instance is no longer owning VRRP VIPs <=",
    ]
    first = sink.mails[0]
    assert first["from"] == "ka@example.org"
    assert first["to"] == ["ops@example.org", "admin@example.org"]
    assert first["helo"] == "lb-a.example.org"
    assert first["msg"]["X-Mailer"] == "Keepalived"
    assert "ops@example.org" in str(first["msg"]["To"])
    await d.close()


async def test_auth_extension_and_password_never_logged(
    smtpd: tuple[Sink, int], caplog: pytest.LogCaptureFixture
) -> None:
    sink, port = smtpd
    caplog.set_level(logging.DEBUG)
    cfg = config(port, f"smtp_username ka\n    smtp_password {SECRET}")
    d = EventDispatcher(cfg, registry(), "LB_A")
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    await d.wait_idle(timeout=20)
    assert len(sink.mails) == 1
    # Wrong password: refused by the server, retried, given up, secret never logged.
    bad = config(port, "smtp_username ka\n    smtp_password wrong-Secret-XYZ")
    n = SmtpNotifier(bad)
    n.backoff = 0.01
    assert not await n.send("subject", "body")
    assert "authentication failed" in caplog.text
    assert SECRET not in caplog.text and "wrong-Secret-XYZ" not in caplog.text
    await d.close()


async def test_unreachable_server_bounded_retries(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()  # nothing listens there
    cfg = config(port)
    d = EventDispatcher(cfg, registry(), "LB_A")
    notifier = next(p for p in d.plugins if isinstance(p, SmtpNotifier))
    notifier.backoff = 0.05
    t0 = time.monotonic()
    d.emit(StateEvent(EventKind.INSTANCE, "VI_1", "MASTER", priority=100))
    # The state machine's path never waits: no attempt has been made when emit returns,
    # even though each one fails at once (connection refused).
    assert not [r for r in caplog.records if "SMTP alert" in r.getMessage()]
    assert time.monotonic() - t0 < 0.5  # 10x emit's cost: "did not block"
    await d.wait_idle(timeout=20)
    attempts = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert len(attempts) == 2
    assert f"SMTP alert to [127.0.0.1]:{port} failed after 3 attempts" in caplog.text
    assert "giving up on '[LB_A] VRRP Instance VI_1 - Entering MASTER state'" in caplog.text
    await d.close()
