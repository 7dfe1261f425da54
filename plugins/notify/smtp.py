"""keepalived's smtp_alert (notifier ``smtp``).

Mail goes to global_defs ``smtp_server`` (host, port 25 by default) within
``smtp_connect_timeout``, ``HELO``/``EHLO`` as ``smtp_helo_name`` (default
``localhost``, as keepalived), from ``notification_email_from`` to every
``notification_email`` address.  Subjects and bodies are keepalived's::

    [ROUTER_ID] VRRP Instance VI_1 - Entering MASTER state
    => VRRP Instance is now owning VRRP VIPs <=

    [ROUTER_ID] VRRP Group G1 - Entering BACKUP state
    => All VRRP group instances are now in BACKUP state <=

    [ROUTER_ID] Realserver [192.0.2.21]:tcp:80 of virtual server [192.0.2.100]:tcp:80 - DOWN
    => TCP CHECK failed on service <=     (the event's detail, if it is "=> ... <=")

    [ROUTER_ID] Virtualserver [192.0.2.100]:tcp:80 - UP
    => Gained quorum <=                   (the event's detail, if it is "=> ... <=")

Who mails (keepalived.conf(5)): an instance with ``smtp_alert`` (defaulted
from ``smtp_alert_vrrp`` / ``smtp_alert``), a sync group likewise, a real
server with ``smtp_alert`` (else its virtual server's, else
``smtp_alert_checker`` / ``smtp_alert``), a virtual server likewise.  As
keepalived, one subject is not mailed twice in a row for the same state.

Extensions: ``smtp_starttls``, ``smtp_username``, ``smtp_password``
(STARTTLS and AUTH).  A failed delivery is retried :data:`ATTEMPTS` times in
all with exponential backoff, then given up with a log line.  The password
is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pykeepalived.api import (
    Config,
    Context,
    EventKind,
    Grammar,
    Kw,
    Node,
    Notifier,
    StateEvent,
    flag,
    format_rs,
    format_vs,
    hookimpl,
    items_kw,
    number,
    port,
    string,
    subject_of,
    virtual_server_of,
)

if TYPE_CHECKING:
    from email.message import EmailMessage

# email and aiosmtplib (a few MB) are imported when a mail is composed or
# sent, so that loading the plugin registry stays cheap.

log = logging.getLogger("pykeepalived.notify.smtp")

#: Delivery attempts per mail (the first one included).
ATTEMPTS = 3
#: Seconds before the 2nd attempt; doubled before each next one.
BACKOFF = 2.0

_VRRP_TEXT = {
    "MASTER": ("Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="),
    "BACKUP": ("Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    "FAULT": ("Entering FAULT state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    "STOP": ("Stopping", "=> VRRP Instance stopping <="),
    "DELETED": ("Deleted", "=> VRRP Deleted at reload <="),
}
_GROUP_TEXT = {
    "MASTER": ("Entering MASTER state", "=> All VRRP group instances are now in MASTER state <="),
    "BACKUP": ("Entering BACKUP state", "=> All VRRP group instances are now in BACKUP state <="),
    "FAULT": ("Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="),
    "STOP": ("Stopping", "=> All VRRP group instances are now stopping <="),
}


def _first(*values: bool | None) -> bool:
    return next((v for v in values if v is not None), False)


class SmtpNotifier(Notifier):
    name = "smtp"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        gd = config.global_defs
        self.attempts = ATTEMPTS
        self.backoff = BACKOFF
        # Each attempt may take connect + a few round trips under the timeout.
        per_attempt = 2 * gd.smtp_connect_timeout
        self.timeout = self.attempts * per_attempt + self.backoff * (2**self.attempts) + 5.0
        #: Subject -> last state mailed (keepalived's last_email_state).
        self._last: dict[tuple[EventKind, str], str] = {}

    # -- what to send ------------------------------------------------------------------

    def enabled(self, ev: StateEvent) -> bool:
        gd = self.config.global_defs
        obj = subject_of(self.config, ev)
        if obj is None:
            return False
        if ev.kind is EventKind.INSTANCE:
            return bool(obj.smtp_alert) or (
                obj.smtp_alert is None and _first(gd.smtp_alert_vrrp, gd.smtp_alert)
            )
        if ev.kind is EventKind.GROUP:
            return _first(obj.smtp_alert, gd.smtp_alert_vrrp, gd.smtp_alert)
        vs = virtual_server_of(self.config, ev)
        vs_flag = vs.smtp_alert if vs is not None else None
        if ev.kind is EventKind.REAL_SERVER:
            return _first(obj.smtp_alert, vs_flag, gd.smtp_alert_checker, gd.smtp_alert)
        return _first(vs_flag, gd.smtp_alert_checker, gd.smtp_alert)

    def compose(self, ev: StateEvent) -> tuple[str, str] | None:
        """(subject, body) as keepalived writes them, or None for no mail."""
        rid = ev.router_id or self.config.global_defs.router_id or ""
        if ev.kind is EventKind.INSTANCE:
            text = _VRRP_TEXT.get(ev.state)
            if text is None:
                return None
            return f"[{rid}] VRRP Instance {ev.name} - {text[0]}", text[1]
        if ev.kind is EventKind.GROUP:
            text = _GROUP_TEXT.get(ev.state)
            if text is None:
                return None
            return f"[{rid}] VRRP Group {ev.name} - {text[0]}", text[1]
        vs = virtual_server_of(self.config, ev)
        if ev.kind is EventKind.REAL_SERVER:
            rs = subject_of(self.config, ev)
            body = _body(ev.detail) or (
                "=> CHECK succeed on service <="
                if ev.state == "UP"
                else "=> CHECK failed on service <="
            )
            return (
                f"[{rid}] Realserver {format_rs(rs, vs)} of virtual server {format_vs(vs)} - {ev.state}",
                body,
            )
        body = _body(ev.detail) or (
            "=> Gained quorum <=" if ev.state == "UP" else "=> Lost quorum <="
        )
        return f"[{rid}] Virtualserver {format_vs(vs)} - {ev.state}", body

    def wants(self, event: StateEvent) -> bool:
        gd = self.config.global_defs
        if not gd.notification_email or gd.smtp_server is None:
            return False
        if self._last.get((event.kind, event.name)) == event.state:
            return False
        if (
            gd.no_email_faults
            and event.state == "FAULT"
            and event.kind in (EventKind.INSTANCE, EventKind.GROUP)
        ):
            # keepalived.conf(5) global_defs: "no_email_faults: Don't send
            # emails about FAULT states" (instances and sync groups).
            return False
        return self.enabled(event) and self.compose(event) is not None

    def message(self, subject: str, body: str) -> EmailMessage:
        import email.utils
        from email.message import EmailMessage

        gd = self.config.global_defs
        msg = EmailMessage()
        msg["Date"] = email.utils.formatdate(localtime=True)
        msg["From"] = gd.notification_email_from or "keepalived@localhost"
        msg["Subject"] = subject
        msg["X-Mailer"] = "Keepalived"
        msg["To"] = ", ".join(gd.notification_email)
        msg.set_content(body + "\n")
        return msg

    # -- sending ------------------------------------------------------------------------

    async def notify(self, event: StateEvent) -> None:
        key = (event.kind, event.name)
        if self._last.get(key) == event.state:
            return
        composed = self.compose(event)
        if composed is None:
            return
        # Recorded before sending, as keepalived: a failed mail is not re-sent
        # for the same state by a later identical event.
        self._last[key] = event.state
        await self.send(*composed)

    async def send(self, subject: str, body: str) -> bool:
        """Deliver one alert with bounded retries; True when the server took it."""
        import email.utils

        import aiosmtplib

        gd = self.config.global_defs
        assert gd.smtp_server is not None
        host, port = gd.smtp_server
        where = f"[{host}]:{port}"
        msg = self.message(subject, body)
        sender = email.utils.parseaddr(str(msg["From"]))[1] or str(msg["From"])
        recipients = [email.utils.parseaddr(a)[1] or a for a in gd.notification_email]
        kwargs: dict[str, Any] = {
            "hostname": host,
            "port": port,
            "timeout": gd.smtp_connect_timeout,
            "local_hostname": gd.smtp_helo_name or "localhost",
            "start_tls": gd.smtp_starttls,
            "use_tls": False,
        }
        if gd.smtp_username is not None:
            kwargs["username"] = gd.smtp_username
            kwargs["password"] = gd.smtp_password or ""
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                await aiosmtplib.send(msg, sender=sender, recipients=recipients, **kwargs)
            except (aiosmtplib.SMTPException, OSError) as exc:
                why = _describe(exc)
                if attempt < self.attempts:
                    log.warning(
                        "SMTP alert to %s failed (attempt %d/%d): %s; retrying in %gs",
                        where,
                        attempt,
                        self.attempts,
                        why,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                log.error(
                    "SMTP alert to %s failed after %d attempts: %s; giving up on '%s'",
                    where,
                    self.attempts,
                    why,
                    subject,
                )
                return False
            log.info("SMTP alert successfully sent.")
            return True
        return False


def _body(detail: str) -> str:
    """An event's detail is the mail body only when it is keepalived's ``=> ... <=`` text."""
    return detail if detail.startswith("=>") else ""


def _describe(exc: BaseException) -> str:
    """A failure in words, never with credentials (aiosmtplib never echoes them)."""
    import aiosmtplib

    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
        return "Timeout connecting SMTP server"
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return "SMTP connection ERROR"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return f"authentication failed ({exc.code})"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"server said {exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _smtp_server(node: Node, ctx: Context) -> tuple[str, int]:
    """``smtp_server HOST [PORT]``; keepalived's default port is 25."""
    return node.args[0], port(node.args[1]) if len(node.args) > 1 else 25


def _email(node: Node, ctx: Context) -> str:
    return node.keyword


@hookimpl
def pykeepalived_register_keywords(grammar: Grammar) -> None:
    # Values land in the model's typed fields (GlobalDefs.smtp_server, ...).
    grammar.add("global_defs", Kw("no_email_faults", flag, 0, 1))
    grammar.add("global_defs", items_kw("notification_email", _email, None))
    grammar.add("global_defs", Kw("notification_email_from", string, 1, 1))
    grammar.add("global_defs", Kw("smtp_server", _smtp_server, 1, 2))
    grammar.add("global_defs", Kw("smtp_helo_name", string, 1, 1))
    grammar.add("global_defs", Kw("smtp_connect_timeout", number(0.001, 3600), 1, 1))
    for name in ("smtp_alert", "smtp_alert_vrrp", "smtp_alert_checker", "smtp_starttls"):
        grammar.add("global_defs", Kw(name, flag, 0, 1))
    grammar.add("global_defs", Kw("smtp_username", string, 1, 1))
    grammar.add("global_defs", Kw("smtp_password", string, 1, 1))
    for block in ("vrrp_instance", "vrrp_sync_group", "real_server", "virtual_server"):
        grammar.add(block, Kw("smtp_alert", flag, 0, 1))


@hookimpl
def pykeepalived_register_notifiers() -> dict[str, type[Notifier]]:
    return {"smtp": SmtpNotifier}
