"""Storing a batch reads what the state, its changes, their alerts and the events need, and
nothing more: the locked rows leave out ``results.STORE_DEFERRED``, and nothing reads those
columns back (a deferred column read loads it, a query per check: it would no longer be
deferred)."""

from __future__ import annotations

import pytest

from connections_app.alerts.models import Alert
from connections_app.models import HealthCheck
from connections_app.monitor import _log_change, change_event
from connections_app.results import STORE_DEFERRED, Outcome, store_outcomes
from connections_app.summary import check_summary
from tests.alerting import channel
from tests.test_state import STEADY, T0, make_check, result

pytestmark = pytest.mark.django_db


def test_a_batch_with_changes_alerts_and_events_reads_no_column_it_left_out():
    checks = [make_check(name=f"c{i}", failures_before_down=1, tags="db") for i in range(3)]
    channel("ops", "http://127.0.0.1:9/a")
    batch = [Outcome(c, result(False), checked_at=T0) for c in checks]
    stored = store_outcomes(batch, STEADY)
    for check in stored.checks.values():
        check_summary(check)
    for change in stored.changes:
        _log_change(change)
        change_event(change)
    deferred = {HealthCheck._meta.get_field(name).attname for name in STORE_DEFERRED}
    assert [c.get_deferred_fields() for c in stored.checks.values()] == [deferred] * 3
    assert len(stored.changes) == 3 and Alert.objects.count() == 3
