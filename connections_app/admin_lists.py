"""Admin list parts that never scan a whole table of results: filters whose choices are fixed
(no ``DISTINCT`` over millions of rows to find them) and a paginator that stops counting; and a
row's action checkbox written without a template.

With 10 million results, Django's own ``date_hierarchy`` and a field filter on
``error_category`` each ran a ``DISTINCT`` over the whole table, and the paginator a full
``COUNT(*)``: 2 s on PostgreSQL, 43 s on SQLite (bench/bench_history.py measures the list).
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cached_property

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.paginator import Paginator
from django.db.models import F, FloatField, Func
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from connections_app.db import sort_keys
from connections_app.errors import ErrorCategory

#: The paginator counts at most this many rows; the list then says "10000" and pages that far.
COUNT_CAP = 10_000
#: The date filter's choices: parameter value -> (words, how far back).
PERIODS = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}


class CappedPaginator(Paginator):
    """Counts rows up to ``COUNT_CAP`` (``SELECT COUNT(*) FROM (... LIMIT n)``): an index
    range of at most n rows, never the whole table."""

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[:COUNT_CAP].count()


class PlainActionCheckbox:
    """A ModelAdmin mixin: each row's action checkbox as Django's widget renders it, written
    with ``format_html``. Django renders it through the form widget templates, a third of the
    time of a list of 100 checks (two template includes and their context per row)."""

    def action_checkbox(self, obj) -> SafeString:
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(_("Select this object for an action - {}"), str(obj)),
        )


class SortKey(Func):
    """Each row's value in ``values`` (by primary key; NULL when absent), for ordering a list by
    a figure computed in Python (``db.sort_keys``): a key lookup per row, not a ``CASE`` branch
    per value."""

    output_field = FloatField()

    def __init__(self, values: dict[int, float]) -> None:
        super().__init__(F("pk"))
        self.values = values

    def as_postgresql(self, compiler, connection, **extra):
        pk, params = compiler.compile(self.source_expressions[0])
        by_key = json.dumps({str(key): value for key, value in self.values.items()})
        return f"(%s::jsonb ->> ({pk})::text)::float8", [by_key, *params]

    def as_sqlite(self, compiler, connection, **extra):
        pk, params = compiler.compile(self.source_expressions[0])
        token = sort_keys.remember(self.values)
        return f"{sort_keys.SQLITE_FUNCTION}(%s, {pk})", [token, *params]


class CheckedFilter(admin.SimpleListFilter):
    """Results since a moment (the ``checked_at`` index), instead of a date hierarchy whose
    links need every distinct year, month and day in the table."""

    title = "checked"
    parameter_name = "checked"

    def lookups(self, request, model_admin):
        return [(key, words) for key, (words, _) in PERIODS.items()]

    def queryset(self, request, queryset):
        period = PERIODS.get(self.value())
        if period is None:
            return queryset  # a hand-edited value filters nothing, as Django's own do
        return queryset.filter(checked_at__gte=timezone.now() - period[1])


class CategoryFilter(admin.SimpleListFilter):
    """The error categories the classifier knows (``errors.ErrorCategory``), not a
    ``DISTINCT`` of the stored ones."""

    title = "error category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        return [(c.value, c.value) for c in ErrorCategory]

    def queryset(self, request, queryset):
        known = {c.value for c in ErrorCategory}
        if self.value() not in known:
            return queryset
        # Every category but a warning on a success is a failure's: saying so lets the
        # database use the small index of failures (``result_category_idx``).
        failed = self.value() != ErrorCategory.TLS_EXPIRING
        return queryset.filter(error_category=self.value(), ok=not failed)
