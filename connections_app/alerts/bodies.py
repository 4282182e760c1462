"""What an alert says: the generic webhook JSON, Slack's and Discord's payloads, an email.

Pure functions of ``AlertFacts`` (built from an ``Alert`` and its rows by ``facts_of``), so
every field is tested without a network. No body ever holds a check's or a channel's target;
the reason is the stored message, redacted again on the way out. The webhook body is the
documented contract (docs/ALERTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.urls import reverse
from django.utils.html import escape

from connections_app.alerts.models import (
    ALERT_DEGRADED,
    ALERT_DOWN,
    ALERT_FLAPPING,
    ALERT_RECOVERED,
    ALERT_REMINDER,
    ALERT_TEST,
    Alert,
)
from connections_app.redaction import redact

#: Discord's embed colours: red, amber, green, grey-blue.
COLOURS = {
    ALERT_DOWN: 0xCF222E,
    ALERT_REMINDER: 0xCF222E,
    ALERT_DEGRADED: 0x9A6700,
    ALERT_FLAPPING: 0x9A6700,
    ALERT_RECOVERED: 0x1A7F37,
    ALERT_TEST: 0x57606A,
}
PRODUCT = "Connection Health"


@dataclass(frozen=True)
class AlertFacts:
    """Everything a body may say about one alert."""

    alert_id: int
    kind: str
    channel: str
    check: str | None  # None: a test alert
    check_url: str | None
    from_status: str
    to_status: str
    since: datetime | None
    reason_category: str
    reason_message: str

    @property
    def summary(self) -> str:
        """One line: what happened."""
        name, to = self.check, self.to_status.upper()
        if self.kind == ALERT_TEST:
            return f"Test alert from {PRODUCT}: channel {self.channel!r} works"
        if self.kind == ALERT_RECOVERED:
            return f"{name} is UP again"
        if self.kind == ALERT_REMINDER:
            return f"{name} is still {to}"
        if self.kind == ALERT_FLAPPING:
            return f"{name} is flapping: its alerts are held until it is stable"
        return f"{name} is {to}"

    @property
    def reason(self) -> str:
        """``category: message`` (redacted), or empty."""
        message = redact(self.reason_message)
        if self.reason_category and message:
            return f"{self.reason_category}: {message}"
        return self.reason_category or message


def facts_of(alert: Alert, site_url: str) -> AlertFacts:
    """The facts of ``alert``, from its change (or its check's present state for a reminder)."""
    check, change = alert.health_check, alert.state_change
    facts = {
        "alert_id": alert.pk,
        "kind": alert.kind,
        "channel": alert.channel.name,
        "check": check.name if check else None,
        "check_url": check_url(site_url, check.pk) if check else None,
        "from_status": "",
        "to_status": "",
        "since": None,
        "reason_category": "",
        "reason_message": "",
    }
    if change is not None:
        facts |= {
            "from_status": change.from_status,
            "to_status": change.to_status,
            "since": change.at,
            "reason_category": change.reason_category,
            "reason_message": change.reason_message,
        }
    elif check is not None:  # a reminder, or a change since pruned: the check as it is
        facts |= {
            "from_status": check.status,
            "to_status": check.status,
            "since": check.status_since,
            "reason_category": check.last_error_category,
            "reason_message": check.last_error_message,
        }
    return AlertFacts(**facts)


def check_url(site_url: str, check_id: int) -> str:
    """The check's page in the admin, on ``SITE_URL``."""
    path = reverse("admin:connections_app_healthcheck_change", args=[check_id])
    return f"{site_url.rstrip('/')}{path}"


def webhook_body(facts: AlertFacts) -> dict:
    """The generic webhook's JSON (docs/ALERTS.md)."""
    check = None if facts.check is None else {"name": facts.check, "url": facts.check_url}
    return {
        "alert_id": facts.alert_id,
        "kind": facts.kind,
        "summary": facts.summary,
        "check": check,
        "from": facts.from_status,
        "to": facts.to_status,
        "since": facts.since.isoformat() if facts.since else None,
        "reason": {
            "category": facts.reason_category,
            "message": redact(facts.reason_message),
        },
    }


def slack_body(facts: AlertFacts) -> dict:
    """Slack's incoming-webhook payload: ``text`` (notifications, old clients) and blocks."""
    headline = _slack_escape(facts.summary)
    if facts.check is not None and facts.check_url:
        name = _slack_escape(facts.check)
        headline = headline.replace(name, f"<{facts.check_url}|{name}>", 1)
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": headline}}]
    details = _details(facts)
    if details:
        fields = [
            {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"}
            for label, value in details
        ]
        blocks.append({"type": "section", "fields": fields})
    return {"text": facts.summary, "blocks": blocks}


def discord_body(facts: AlertFacts) -> dict:
    """Discord's webhook payload: ``content`` and one embed. Mentions are off: a check's
    name must not ping @everyone."""
    embed: dict = {
        "title": facts.check or PRODUCT,
        "description": facts.summary,
        "color": COLOURS.get(facts.kind, COLOURS[ALERT_TEST]),
        "fields": [
            {"name": label, "value": value, "inline": True} for label, value in _details(facts)
        ],
    }
    if facts.check_url:
        embed["url"] = facts.check_url
    if facts.since:
        embed["timestamp"] = facts.since.isoformat()
    return {"content": facts.summary, "embeds": [embed], "allowed_mentions": {"parse": []}}


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def email_body(facts: AlertFacts) -> Email:
    """An email with a plain-text and an HTML part saying the same."""
    details = _details(facts)
    lines = [facts.summary, ""] + [f"{label}: {value}" for label, value in details]
    if facts.check_url:
        lines += ["", f"Check: {facts.check_url}"]
    rows = "".join(
        f"<tr><th align='left'>{escape(label)}</th><td>{escape(value)}</td></tr>"
        for label, value in details
    )
    link = (
        f"<p><a href='{escape(facts.check_url)}'>Open {escape(facts.check)}</a></p>"
        if facts.check_url
        else ""
    )
    html = f"<p><strong>{escape(facts.summary)}</strong></p><table>{rows}</table>{link}"
    return Email(f"[{PRODUCT}] {facts.summary}", "\n".join(lines) + "\n", html)


def _details(facts: AlertFacts) -> list[tuple[str, str]]:
    """(label, value) pairs every body shows, in order; empty values left out."""
    details = []
    if facts.from_status and facts.from_status != facts.to_status:
        details.append(("From", facts.from_status.upper()))
    if facts.to_status:
        details.append(
            ("To" if facts.from_status != facts.to_status else "Status", facts.to_status.upper())
        )
    if facts.since:
        details.append(("Since", facts.since.strftime("%Y-%m-%d %H:%M:%S %Z").strip()))
    if facts.reason:
        details.append(("Reason", facts.reason))
    return details


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reads <, > and & as markup: a check named "<!channel>" must not ping.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
