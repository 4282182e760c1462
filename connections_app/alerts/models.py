"""Notification channels and the alert outbox.

A ``NotificationChannel`` says where to tell (a webhook, Slack, Discord or email addresses),
about which checks (all, chosen ones, or tags) and which transitions. An ``Alert`` is one
message for one channel: written in the transaction that stores the state change causing it
(``enqueue``), then claimed, sent and retried by the sender until it is ``sent`` or
``failed``. Nothing about an alert lives only in a runner's memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from connections_app.redaction import url_origin
from connections_app.scope import covers
from connections_app.targets import KIND_HTTP, validate_target
from connections_app.validation import OneMessagePerField

WEBHOOK = "webhook"
SLACK = "slack"
DISCORD = "discord"
EMAIL = "email"
CHANNEL_KINDS = [
    (WEBHOOK, "Webhook (JSON POST)"),
    (SLACK, "Slack incoming webhook"),
    (DISCORD, "Discord webhook"),
    (EMAIL, "Email"),
]
URL_KINDS = frozenset({WEBHOOK, SLACK, DISCORD})

# What an alert tells.
ALERT_DOWN = "down"
ALERT_DEGRADED = "degraded"
ALERT_RECOVERED = "recovered"
ALERT_REMINDER = "reminder"
ALERT_FLAPPING = "flapping"
ALERT_TEST = "test"
ALERT_KINDS = [
    (ALERT_DOWN, "Down"),
    (ALERT_DEGRADED, "Degraded"),
    (ALERT_RECOVERED, "Recovered"),
    (ALERT_REMINDER, "Still down (reminder)"),
    (ALERT_FLAPPING, "Flapping"),
    (ALERT_TEST, "Test"),
]

# Where an alert is in its life.
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
ALERT_STATUSES = [(PENDING, "Pending"), (SENDING, "Sending"), (SENT, "Sent"), (FAILED, "Failed")]

MAX_ADDRESSES = 20


def target_error(kind: str, target: str) -> str | None:
    """A sentence naming what is wrong with a channel's ``target`` for its ``kind``, or None.
    Never quotes the target: it is a secret (a Slack or Discord URL holds a token)."""
    target = (target or "").strip()
    if not target:
        return "A target is required: a URL, or email addresses separated by commas."
    if kind in URL_KINDS:
        if validate_target(KIND_HTTP, target) is not None:
            return "The target must be an http:// or https:// URL with a host."
        return None
    if kind == EMAIL:
        addresses = split_addresses(target)
        if len(addresses) > MAX_ADDRESSES:
            return f"At most {MAX_ADDRESSES} addresses."
        for number, address in enumerate(addresses, 1):
            try:
                validate_email(address)
            except ValidationError:
                return f"Address #{number} is not an email address."
        return None
    return None  # an unknown kind has its own message from the field's choices


def split_addresses(target: str) -> list[str]:
    return [a.strip() for a in target.split(",") if a.strip()]


def shown_target(kind: str, target: str) -> str:
    """A target as it may be shown and logged: a URL's scheme, host and port, its path (which
    may hold a token) as ``…``; email addresses as they are."""
    if kind not in URL_KINDS:
        return target
    origin = url_origin(target)
    if origin is None:
        return "(not a valid URL)"
    parts = urlsplit(target)
    return f"{origin}/…" if parts.path.strip("/") or parts.query else origin


class NotificationChannel(OneMessagePerField):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=CHANNEL_KINDS, default=WEBHOOK)
    #: A secret: never shown whole after it is saved (see ``shown_target``).
    target = models.CharField(
        max_length=1000,
        help_text="The webhook URL (http or https), or email addresses separated by commas.",
    )
    enabled = models.BooleanField(default=True)
    all_checks = models.BooleanField(default=False)
    checks = models.ManyToManyField(
        "connections_app.HealthCheck", blank=True, related_name="notification_channels"
    )
    tags = models.CharField(
        max_length=200,
        blank=True,
        help_text="Checks with any of these tags; comma or space separated.",
    )
    on_down = models.BooleanField(default=True, help_text="A check goes DOWN.")
    on_degraded = models.BooleanField(default=False, help_text="A check goes DEGRADED.")
    on_recovered = models.BooleanField(default=True, help_text="A DOWN or DEGRADED check is UP.")
    on_flapping = models.BooleanField(
        default=False,
        help_text="A check starts flapping (channels that want DOWN alerts get this too: "
        "while a check flaps, its changes send nothing).",
    )
    remind_every = models.PositiveIntegerField(
        default=0, help_text="Minutes between reminders while a check stays DOWN; 0: none."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "connections_app"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from connections_app.models import split_tags

        skip = self.refused_fields()
        self.tags = ",".join(split_tags(self.tags or ""))
        if {"target", "kind"} & skip:
            return
        self.target = (self.target or "").strip()
        error = target_error(self.kind, self.target)
        if error:
            raise ValidationError({"target": error})

    @property
    def shown_target(self) -> str:
        return shown_target(self.kind, self.target)

    def wants(self, alert_kind: str) -> bool:
        """Whether this channel is sent alerts of ``alert_kind``."""
        if alert_kind == ALERT_FLAPPING:
            # While a check flaps its changes send nothing: whoever wants DOWN alerts is told
            # once that they stopped, and why.
            return self.on_flapping or self.on_down
        if alert_kind == ALERT_REMINDER:
            return self.on_down and self.remind_every > 0
        wanted = {
            ALERT_DOWN: self.on_down,
            ALERT_DEGRADED: self.on_degraded,
            ALERT_RECOVERED: self.on_recovered,
            ALERT_TEST: True,
        }
        return wanted.get(alert_kind, False)

    def applies_to(self, check_id: int, tags: Iterable[str], chosen: set[int]) -> bool:
        """Whether this channel covers the check; ``chosen`` are its chosen checks' ids."""
        mine = [t for t in self.tags.split(",") if t]
        return covers(self.all_checks, chosen, mine, check_id, tags)


class Alert(models.Model):
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="alerts"
    )
    #: None for a test alert.
    health_check = models.ForeignKey(
        "connections_app.HealthCheck",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alerts",
    )
    #: The change that caused it; None for reminders and tests (or once the change is pruned).
    state_change = models.ForeignKey(
        "connections_app.StateChange",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="alerts",
    )
    kind = models.CharField(max_length=20, choices=ALERT_KINDS)
    status = models.CharField(max_length=10, choices=ALERT_STATUSES, default=PENDING)
    #: Tries begun (counted at the claim: a runner that dies mid-send used one up).
    attempts = models.PositiveSmallIntegerField(default=0)
    #: When the sender may claim it: due, the next retry, or the end of a claim's lease.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    #: The end of the current claim: after it, another runner takes the alert over.
    claimed_until = models.DateTimeField(null=True, blank=True)
    #: Redacted; a URL in it is reduced to scheme, host, port and path.
    last_error = models.CharField(max_length=500, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "connections_app"
        ordering = ["-created_at", "-pk"]
        constraints = [
            # Exactly one alert per transition and channel, whatever retries a batch has.
            models.UniqueConstraint(
                fields=["channel", "state_change"], name="alert_once_per_change"
            ),
        ]
        indexes = [
            # The sender's claim: "pending or lapsed alerts due by now, oldest first"; also
            # the dashboard's and the admin's count of failed alerts.
            models.Index(fields=["status", "next_attempt_at"], name="alert_due_idx"),
            # Reminders: "the last alert of this channel about this check".
            models.Index(fields=["channel", "health_check", "-created_at"], name="alert_last_idx"),
        ]

    def __str__(self) -> str:
        about = self.health_check.name if self.health_check_id else "test"
        return f"{self.kind} alert #{self.pk} for {about} via {self.channel}"


def failed_count() -> int:
    """Alerts that failed for good: the dashboard's header shows staff how many."""
    return Alert.objects.filter(status=FAILED).count()
