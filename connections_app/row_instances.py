"""Model instances made straight from a query's rows, for the runner's two hot reads: the claim
and the batch's row locks, about a thousand checks a second each.

Django's ``Model.from_db`` runs ``__init__`` for every row (a pass over the fifty-odd fields,
two signals) and, with fields left out, looks each field up in the list of loaded names: 8 %
of a busy runner's samples at 500 results/s (py-spy, SQLite). Here each row's values go into a
new instance's ``__dict__`` as they come from ``values_list`` (its converters applied, as for
any query). A field not loaded behaves as a deferred one: read, it is loaded from the database
by itself, a query per instance (tests hold the runner to never reading one).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Model, QuerySet
from django.db.models.base import ModelState


def loaded_fields(model: type[Model], left_out: Iterable[str]) -> tuple[str, ...]:
    """The attribute names of ``model``'s columns but those of the fields ``left_out``."""
    skipped = {model._meta.get_field(name).attname for name in left_out}
    return tuple(f.attname for f in model._meta.concrete_fields if f.attname not in skipped)


def instances(queryset: QuerySet, attnames: tuple[str, ...]) -> list[Model]:
    """``queryset``'s rows as instances of its model holding the columns ``attnames`` (the
    primary key among them), as saved instances of the queryset's database."""
    model, alias = queryset.model, queryset.db
    made = []
    for row in queryset.values_list(*attnames):
        instance = model.__new__(model)
        state = instance._state = ModelState()
        state.adding, state.db = False, alias
        instance.__dict__.update(zip(attnames, row, strict=True))
        made.append(instance)
    return made
