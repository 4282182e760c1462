"""Which alerts a batch of state changes causes: written in the batch's own transaction.

Called by ``results._store`` (and ``state.apply_maintenance``) right after the ``StateChange``
rows are saved, so a change and its alerts are committed together or not at all: a runner that
dies after the commit leaves alerts to send, never a change nobody will hear of.

From a change to an alert kind (``alert_kind``):

- to DOWN: ``down``; to DEGRADED: ``degraded`` (from UP, UNKNOWN, DOWN or a maintenance window
  that ended while the check still fails);
- DOWN or DEGRADED to UP: ``recovered``;
- nothing for UNKNOWN to UP (a new check that works), PAUSED, entering a maintenance window or
  leaving it UP, nor for any change marked ``during_maintenance``.

While a check flaps its changes cause nothing; the batch in which it begins to flap causes one
``flapping`` alert instead, for the channels that want flapping or DOWN alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F, FilteredRelation, Max, Q
from django.utils import timezone

from connections_app.alerts.models import (
    ALERT_DEGRADED,
    ALERT_DOWN,
    ALERT_FLAPPING,
    ALERT_RECOVERED,
    ALERT_REMINDER,
    ALERT_TEST,
    Alert,
    NotificationChannel,
)
from connections_app.db.transactions import retry_transaction
from connections_app.models import DEGRADED, DOWN, UP, HealthCheck, StateChange, split_tags


def alert_kind(change: StateChange) -> str | None:
    """The kind of alert ``change`` causes, or None."""
    if change.during_maintenance:
        return None
    if change.to_status == DOWN:
        return ALERT_DOWN
    if change.to_status == DEGRADED:
        return ALERT_DEGRADED
    if change.to_status == UP and change.from_status in (DOWN, DEGRADED):
        return ALERT_RECOVERED
    return None


@dataclass
class _Channel:
    """A channel and the ids of its chosen checks among those asked about."""

    channel: NotificationChannel
    chosen: set[int] = field(default_factory=set)

    def covers(self, check_id: int, tags: Iterable[str]) -> bool:
        """Whether the channel applies to the check: the one rule enqueueing, reminders, the
        admin's check page and the dashboard's check page all use."""
        return self.channel.applies_to(check_id, tags, self.chosen)


def enqueue_for_changes(
    changes: list[StateChange], began_flapping: Iterable[HealthCheck] = ()
) -> list[Alert]:
    """Write the alerts ``changes`` cause (see the module's rules), one per change and channel
    that applies; the caller's transaction commits them with the changes."""
    wanted: list[tuple[HealthCheck, StateChange, str]] = []
    for change in changes:
        kind = alert_kind(change)
        if kind is not None and not change.health_check.flapping:
            wanted.append((change.health_check, change, kind))
    for check in began_flapping:
        mine = [c for c in changes if c.health_check_id == check.pk]
        if mine:
            wanted.append((check, mine[-1], ALERT_FLAPPING))
    if not wanted:
        return []
    channels = enabled_channels({check.pk for check, _, _ in wanted})
    now = timezone.now()
    alerts = [
        Alert(
            channel=entry.channel,
            health_check=check,
            state_change=change,
            kind=kind,
            next_attempt_at=now,
            created_at=now,
        )
        for check, change, kind in wanted
        for entry in channels
        if entry.channel.wants(kind) and entry.covers(check.pk, check.tag_list)
    ]
    return Alert.objects.bulk_create(alerts)


def enabled_channels(check_ids: set[int], **filters) -> list[_Channel]:
    """The enabled channels (matching ``filters``), each with which of ``check_ids`` it chose:
    one query (a row per chosen check), whatever the number of channels and checks."""
    chosen = FilteredRelation("checks", condition=Q(checks__pk__in=check_ids))
    rows = (
        NotificationChannel.objects.filter(enabled=True, **filters)
        .annotate(chosen=chosen)
        .annotate(chosen_id=F("chosen__pk"))
        .order_by("pk")
    )
    by_pk: dict[int, _Channel] = {}
    for channel in rows:
        entry = by_pk.setdefault(channel.pk, _Channel(channel))
        if channel.chosen_id is not None:
            entry.chosen.add(channel.chosen_id)
    return list(by_pk.values())


def channels_for(check: HealthCheck) -> list[NotificationChannel]:
    """The enabled channels that apply to ``check``, by name (whatever changes they send):
    what its pages list as "alert channels". One query."""
    covering = [
        e.channel for e in enabled_channels({check.pk}) if e.covers(check.pk, check.tag_list)
    ]
    return sorted(covering, key=lambda channel: channel.name)


def enqueue_tests(channel_ids: Iterable[int]) -> int:
    """A ``test`` alert for each channel (the admin's action); the sender delivers them."""
    now = timezone.now()
    alerts = [
        Alert(channel_id=pk, kind=ALERT_TEST, next_attempt_at=now, created_at=now)
        for pk in channel_ids
    ]
    return len(Alert.objects.bulk_create(alerts))


@retry_transaction
def enqueue_reminders(now: datetime) -> list[Alert]:
    """A ``reminder`` for each channel with ``remind_every`` and each check it covers that is
    still DOWN (not flapping), when the channel's last alert about the check, or the change to
    DOWN, is at least ``remind_every`` minutes old. A fixed number of queries.

    The channels' rows are locked first, so two runners doing this at once take turns and the
    second sees the first one's reminders.
    """
    locked = NotificationChannel.objects.select_for_update().filter(
        enabled=True, on_down=True, remind_every__gt=0
    )
    if not list(locked.order_by("pk").values_list("pk", flat=True)):
        return []
    down = {
        pk: (split_tags(tags), since)
        for pk, tags, since in HealthCheck.objects.filter(
            status=DOWN, flapping=False, enabled=True
        ).values_list("pk", "tags", "status_since")
    }
    if not down:
        return []
    channels = enabled_channels(set(down), on_down=True, remind_every__gt=0)
    last = _last_alerts([e.channel.pk for e in channels], list(down))
    alerts = [
        Alert(
            channel=entry.channel,
            health_check_id=check_id,
            kind=ALERT_REMINDER,
            next_attempt_at=now,
            created_at=now,
        )
        for entry in channels
        for check_id in _reminders_due(entry, down, last, now)
    ]
    return Alert.objects.bulk_create(alerts)


def _reminders_due(
    entry: _Channel,
    down: dict[int, tuple[list[str], datetime | None]],
    last: dict[tuple[int, int], datetime],
    now: datetime,
) -> list[int]:
    """The DOWN checks ``entry`` covers whose last news is ``remind_every`` old."""
    every = timedelta(minutes=entry.channel.remind_every)
    due = []
    for check_id, (tags, since) in down.items():
        if not entry.covers(check_id, tags):
            continue
        known = [t for t in (last.get((entry.channel.pk, check_id)), since) if t is not None]
        if not known or now - max(known) >= every:
            due.append(check_id)
    return due


def _last_alerts(channel_ids: list[int], check_ids: list[int]) -> dict[tuple[int, int], datetime]:
    """When each channel last alerted about each check: one grouped query."""
    rows = (
        Alert.objects.filter(channel_id__in=channel_ids, health_check_id__in=check_ids)
        .values("channel_id", "health_check_id")
        .annotate(last=Max("created_at"))
        .values_list("channel_id", "health_check_id", "last")
    )
    return {(channel, check): last for channel, check, last in rows}
