"""Changelists answer only the lookups their filters declare.

Django's ``ModelAdmin.lookup_allowed`` accepts any lookup on a model's own fields, so a staff
user who may only view a list could ask ``?target__regex=^http://alice:S`` and read a masked
password back one character at a time from the row count. Here a query parameter must be one a
declared filter (``list_filter``, ``date_hierarchy``) would itself write; anything else is
refused before a query runs (Django answers 400, ``DisallowedModelAdminLookup``).
"""

from __future__ import annotations

from django.contrib.admin import SimpleListFilter
from django.http import HttpRequest

#: What Django's field filters write for a field ``f``: ``f__exact`` and ``f__isnull`` (booleans,
#: choices, all values), ``f__id__exact`` (a foreign key's filter).
FIELD_FILTER_LOOKUPS = ("exact", "isnull", "id__exact")
DATE_HIERARCHY_LOOKUPS = ("year", "month", "day")


def declared_lookups(list_filter, date_hierarchy: str | None) -> frozenset[str]:
    """The query parameters the filters of a changelist write, and no other."""
    allowed: set[str] = set()
    for item in list_filter:
        if isinstance(item, type) and issubclass(item, SimpleListFilter):
            allowed.add(item.parameter_name)
            continue
        field = item[0] if isinstance(item, (list, tuple)) else item
        allowed.update(f"{field}__{lookup}" for lookup in FIELD_FILTER_LOOKUPS)
    if date_hierarchy:
        allowed.update(f"{date_hierarchy}__{part}" for part in DATE_HIERARCHY_LOOKUPS)
    return frozenset(allowed)


class DeclaredLookupsOnly:
    """A ``ModelAdmin`` mixin: ``lookup_allowed`` is true only for a declared filter's own
    parameters (the search box, sorting and paging are not lookups and stay as they are)."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        list_filter = self.get_list_filter(request) if request is not None else self.list_filter
        return lookup in declared_lookups(list_filter, self.date_hierarchy)
