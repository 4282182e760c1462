"""``row_instances``: instances made from rows behave as Django's own, deferred fields included."""

from __future__ import annotations

import pytest

from connections_app.models import HealthCheck
from connections_app.row_instances import instances, loaded_fields

pytestmark = pytest.mark.django_db


def test_rows_become_saved_instances_and_a_field_left_out_loads_when_read(
    django_assert_num_queries,
):
    HealthCheck.objects.all().delete()
    made = HealthCheck.objects.create(name="api", kind="tcp", target="127.0.0.1:9", tags="db")
    fields = loaded_fields(HealthCheck, ["recent", "tags"])
    assert "id" in fields and "recent" not in fields and "target" in fields
    with django_assert_num_queries(1):
        (check,) = instances(HealthCheck.objects.filter(pk=made.pk), fields)
    assert (check.pk, check.name, check.target) == (made.pk, "api", "127.0.0.1:9")
    assert not check._state.adding and check._state.db == "default"
    assert check.get_deferred_fields() == {"recent", "tags"}
    with django_assert_num_queries(1):
        assert check.tag_list == ["db"]  # a deferred field: loaded on first use
    check.failures_in_a_row = 4
    check.save(update_fields=["failures_in_a_row"])
    assert HealthCheck.objects.get(pk=made.pk).failures_in_a_row == 4
