"""One try of one alert: a POST to a webhook (generic, Slack, Discord) or an email, and what
its outcome means for the outbox (sent, try again later, or failed for good).

Nothing here retries: the outbox does, persistently (``sender``). Every POST carries
``Idempotency-Key: <alert id>``, the same on every try, so a receiver can drop a resend after
a response that was lost on the way back. Error texts are redacted, the channel's own target is
shown as ``shown_target`` (its path may hold a token) and any other URL is cut to
``scheme://host:port/path``.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from connections_app.alerts.bodies import (
    AlertFacts,
    discord_body,
    email_body,
    slack_body,
    webhook_body,
)
from connections_app.alerts.models import DISCORD, EMAIL, SLACK, Alert, split_addresses
from connections_app.connection_manager import ConnectionManager
from connections_app.errors import ErrorCategory, classify, http_status_category, is_retryable
from connections_app.redaction import bare_urls

#: 4xx answers that ask to come back later rather than saying "never".
RETRY_4XX = frozenset({408, 429})
MAX_ERROR = 500
BODIES = {SLACK: slack_body, DISCORD: discord_body}


@dataclass(frozen=True)
class Outcome:
    """What one try did. ``permanent``: no retry can help (a 4xx, a refused recipient)."""

    sent: bool
    category: ErrorCategory | None = None
    permanent: bool = False
    status: int | None = None
    error: str = ""
    retry_after: str | None = None


async def deliver(
    alert: Alert, facts: AlertFacts, manager: ConnectionManager, seconds: float
) -> Outcome:
    """Send ``alert`` once, within ``seconds``; never raises for a failed send. Email goes
    through a thread of its own: SMTP blocks, and must not hold the database's thread."""
    if alert.channel.kind == EMAIL:
        return await sync_to_async(send_email, thread_sensitive=False)(alert, facts, seconds)
    return await post(alert, facts, manager, seconds)


async def post(
    alert: Alert, facts: AlertFacts, manager: ConnectionManager, seconds: float
) -> Outcome:
    channel = alert.channel
    body = BODIES.get(channel.kind, webhook_body)(facts)
    headers = {"Idempotency-Key": str(alert.pk)}
    try:
        response = await manager.request(
            "POST", channel.target, json=body, headers=headers, timeout=seconds,
            allow_redirects=False,
        )  # fmt: skip
    except Exception as exc:
        category = classify(exc)
        error = clean_error(f"{type(exc).__name__}: {exc}", alert)
        return Outcome(False, category, not is_retryable(exc), error=error)
    status = response.status
    if 200 <= status < 300:
        return Outcome(True, status=status)
    text = (await response.text(errors="replace"))[:200]
    error = clean_error(f"HTTP {status}: {text}" if text.strip() else f"HTTP {status}", alert)
    category = http_status_category(status) or ErrorCategory.UNKNOWN
    # A redirect or a 4xx says "not like this": the same request will never do better.
    permanent = status < 500 and status not in RETRY_4XX
    return Outcome(False, category, permanent, status, error, response.headers.get("Retry-After"))


def send_email(alert: Alert, facts: AlertFacts, seconds: float) -> Outcome:
    """The email of ``alert`` through Django's mail backend (``EMAIL_URL``); blocking, so the
    caller runs it in a thread. ``Message-ID`` is the same on every try."""
    email = email_body(facts)
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    message = EmailMultiAlternatives(
        email.subject,
        email.text,
        settings.DEFAULT_FROM_EMAIL,
        split_addresses(alert.channel.target),
        headers={"Message-ID": f"<alert-{alert.pk}@{host}>", "Idempotency-Key": str(alert.pk)},
    )
    message.attach_alternative(email.html, "text/html")
    try:
        with get_connection(timeout=seconds) as connection:
            connection.send_messages([message])
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        error = clean_error(f"recipients refused: {sorted(set(codes))}", alert)
        return Outcome(False, ErrorCategory.UNKNOWN, all(c >= 500 for c in codes), error=error)
    except smtplib.SMTPResponseException as exc:
        error = clean_error(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", alert)
        return Outcome(False, ErrorCategory.UNKNOWN, exc.smtp_code >= 500, error=error)
    except Exception as exc:
        error = clean_error(f"{type(exc).__name__}: {exc}", alert)
        return Outcome(False, classify(exc), not is_retryable(exc), error=error)
    return Outcome(True)


def clean_error(text: str, alert: Alert) -> str:
    """``text`` as it may be stored and shown: the channel's target as ``shown_target``, any
    other URL cut to scheme://host:port/path, redacted, one line, bounded."""
    target = alert.channel.target
    if target:
        text = text.replace(target, alert.channel.shown_target)
    return " ".join(bare_urls(text).split())[:MAX_ERROR]
