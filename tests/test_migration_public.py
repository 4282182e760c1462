"""Migration 0015 gives every existing check a badge token of its own (a column default
would have given them all one, and the unique index would have refused it)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("connections_app", "0016_runner")]
AFTER = [("connections_app", "0017_public_status_page")]


@pytest.mark.django_db(transaction=True)
def test_existing_checks_each_get_their_own_badge_token():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("connections_app", "HealthCheck")
    old.objects.all().delete()
    for name in ("a", "b", "c"):
        old.objects.create(name=name, kind="tcp", target="127.0.0.1:1")
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps.get_model("connections_app", "HealthCheck")
        tokens = list(new.objects.values_list("badge_token", flat=True))
        assert len(tokens) == 3 and len(set(tokens)) == 3
        assert all(len(token) >= 32 for token in tokens)
        assert not new.objects.filter(public=True).exists()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
