"""Storing a batch of probe results: the results, the state they cause and its changes, in one
transaction.

The checks' rows are locked first (``select_for_update``), so a delete in the admin cannot slip
in between, and two runners storing results of the same check take turns. Each check's state
moves only by results newer than its ``last_checked_at``: a batch stored again (a retry after a
commit whose outcome was unknown) leaves the state as it was, and the unique key (check,
checked_at) leaves the results as they were.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from django.db import connection, connections
from django.db.models import (
    BooleanField,
    CharField,
    DateTimeField,
    Field,
    FloatField,
    IntegerField,
    TextField,
)
from django.utils import timezone

from connections_app import closed_totals, result_rows, rollups
from connections_app.alerts.enqueue import enqueue_for_changes
from connections_app.db.bulk_update import update_many
from connections_app.db.loop_connection import close_stale_connection
from connections_app.db.transactions import retry_transaction
from connections_app.maintenance import checks_in_maintenance
from connections_app.models import CheckResult, HealthCheck, StateChange
from connections_app.probes import ProbeResult
from connections_app.result_rows import ResultRow
from connections_app.row_instances import instances, loaded_fields
from connections_app.state import STATE_FIELDS, FlapRule, Transitions, apply_result, update_flapping


@dataclass
class Outcome:
    """One probe run: the check as it was run, what it found, and when it ended.

    After the batch is stored, ``stored`` is true and ``status`` and ``health`` are the check's
    as the results left them; a check deleted meanwhile stored nothing.
    """

    check: HealthCheck
    result: ProbeResult
    checked_at: datetime = field(default_factory=timezone.now)
    stored: bool = False
    status: str = ""
    health: str = ""

    def result_dict(self) -> dict:
        return {
            "checked_at": self.checked_at.isoformat(),
            "ok": self.result.ok,
            "latency_ms": self.result.latency_ms,
            "http_status": self.result.http_status,
            "error_category": self.result.error_category,
            "error_message": self.result.error_message,
            "tls_days_left": self.result.tls_days_left,
        }

    def row(self) -> ResultRow:
        result = self.result
        return ResultRow(
            self.check.pk,
            self.checked_at,
            result.ok,
            result.latency_ms,
            result.http_status,
            result.error_category,
            result.error_message,
            result.tls_days_left,
            result.ping_body,
        )


@dataclass
class Stored:
    """What a stored batch changed: the checks as they are now, and their state changes."""

    checks: dict[int, HealthCheck]
    changes: list[StateChange]


def store_outcomes(outcomes: list[Outcome], rule: FlapRule | None = None) -> Stored:
    """Store the results and move their checks' state, in one transaction."""
    close_stale_connection()
    stored = _store(outcomes, rule or FlapRule.from_settings())
    for outcome in outcomes:
        check = stored.checks.get(outcome.check.pk)
        if check is not None:
            outcome.stored = True
            outcome.status, outcome.health = check.status, check.health
    return stored


#: Columns the storing of results never reads: how a probe asks (it has run) and times only
#: the scheduling and pings use. Left out of the locked rows, a batch loads five columns of
#: times fewer per check (each parsed in Python). What the state, its changes, their alerts
#: and the events read stays (tests/test_results_store.py holds it to that).
STORE_DEFERRED = (
    "request_headers",
    "request_body",
    "expected_body",
    "body_regex",
    "json_path",
    "json_expected",
    "accepted_statuses",
    "dns_resolver",
    "dns_expected",
    "push_token",
    "badge_token",
    "public_name",
    "created_at",
    "updated_at",
    "next_due_at",
    "last_ping_at",
    "push_started_at",
)


_STORED_FIELDS = loaded_fields(HealthCheck, STORE_DEFERRED)


@retry_transaction
def _store(outcomes: list[Outcome], rule: FlapRule) -> Stored:
    locked = HealthCheck.objects.select_for_update().filter(pk__in={o.check.pk for o in outcomes})
    checks = {c.pk: c for c in instances(locked, _STORED_FIELDS)}
    rows = [o.row() for o in outcomes if o.check.pk in checks]
    new = _not_yet_stored(rows, checks)
    result_rows.insert(new, connection.alias)
    rollups.add(new)
    closed_totals.forget_late(new)
    at = max((row.checked_at for row in rows), default=timezone.now())
    inside = checks_in_maintenance(((c.pk, c.tags) for c in checks.values()), at)
    transitions = Transitions()
    for check_id, results in _newer_by_check(rows, checks).items():
        check = checks[check_id]
        for result in results:
            apply_result(check, result, check_id in inside, transitions)
    began_flapping = update_flapping(checks.values(), transitions, at, rule)
    save_state(list(checks.values()))
    changes = transitions.save()
    # In this transaction: a change and the alerts it causes are committed together.
    enqueue_for_changes(changes, began_flapping)
    return Stored(checks, changes)


def save_state(checks: list[HealthCheck]) -> None:
    """Write the checks' state fields, one UPDATE statement for the batch (``update_many``)."""
    save_fields(checks, STATE_FIELDS)


def save_fields(checks: list[HealthCheck], names: list[str]) -> None:
    """Write the fields ``names`` of ``checks`` in one statement (not ``bulk_update``: it
    builds a CASE WHEN per field and row, and parsing that cost more than storing the batch)."""
    # The connection itself, not the ``connection`` proxy: each of its attributes is a look-up
    # in a context-local store, and this runs for every field of every check in a batch.
    db = connections[connection.alias]
    meta = HealthCheck._meta
    fields = [meta.get_field(name) for name in names]
    columns = [(f.column, f.cast_db_type(db)) for f in fields]
    prepare = [(f.attname, _preparer(f, db)) for f in fields]
    rows = [
        [to_db(getattr(check, name)) for name, to_db in prepare] + [check.pk] for check in checks
    ]
    update_many(db, meta.db_table, meta.pk.column, columns, rows)


#: Fields whose value the database takes as Python holds it: for a text, a number or a
#: boolean of its own type (as the state machine sets them) Django's preparation returns the
#: value itself, at a few calls per field and check: more than the UPDATE itself on SQLite.
_AS_IS = (CharField, TextField, IntegerField, FloatField, BooleanField)


def _preparer(field: Field, db) -> Callable[[object], object]:
    """A field's value as the database takes it. A time needs the backend's form (SQLite:
    naive UTC text): it goes straight to the backend."""
    if isinstance(field, DateTimeField):
        return db.ops.adapt_datetimefield_value
    if isinstance(field, _AS_IS):
        return _as_is
    return partial(field.get_db_prep_save, connection=db)


def _as_is(value: object) -> object:
    return value


def _not_yet_stored(rows: list[ResultRow], checks: dict[int, HealthCheck]) -> list[ResultRow]:
    """The rows whose (check, checked_at) is neither stored nor earlier in the batch: what
    the insert will really add, so the rollups count a batch stored twice once. Exact because
    the checks' rows are locked: no other writer adds results for them meanwhile.

    Only a row no newer than its check's ``last_checked_at`` can be stored already (every
    stored result moved it at least that far): the runner's batches, all newer, cost no query.
    """

    def maybe_stored(row: ResultRow) -> bool:
        last = checks[row.health_check_id].last_checked_at
        return last is not None and row.checked_at <= last

    doubtful = [row for row in rows if maybe_stored(row)]
    stored = set()
    if doubtful:
        stored = set(
            CheckResult.objects.filter(
                health_check_id__in={r.health_check_id for r in doubtful},
                checked_at__in={r.checked_at for r in doubtful},
            ).values_list("health_check_id", "checked_at")
        )
    new = []
    for row in rows:
        key = (row.health_check_id, row.checked_at)
        if key not in stored:
            stored.add(key)
            new.append(row)
    return new


def _newer_by_check(
    rows: list[ResultRow], checks: dict[int, HealthCheck]
) -> dict[int, list[ResultRow]]:
    """Each check's results newer than the last one it applied, oldest first."""
    newer: dict[int, list[ResultRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.checked_at):
        last = checks[row.health_check_id].last_checked_at
        if last is None or row.checked_at > last:
            newer[row.health_check_id].append(row)
    return newer
