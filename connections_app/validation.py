"""One message per field: ``clean()`` judges only the values ``clean_fields()`` accepted.

A value a field refused already has its message (and may not even be a number to compare); a
ModelForm passes the fields it refused itself as ``exclude`` (their values on the instance are
the stored ones, not what was typed). Models that validate across fields inherit this and ask
``refused_fields()`` in their ``clean()``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


class OneMessagePerField(models.Model):
    class Meta:
        abstract = True

    def full_clean(self, exclude=None, validate_unique=True, validate_constraints=True) -> None:
        self._not_judged = set(exclude or ())
        try:
            super().full_clean(exclude, validate_unique, validate_constraints)
        finally:
            del self._not_judged

    def clean_fields(self, exclude=None) -> None:
        try:
            super().clean_fields(exclude)
        except ValidationError as exc:
            if hasattr(self, "_not_judged"):
                self._not_judged |= set(exc.error_dict)
            raise

    def refused_fields(self) -> set[str]:
        """The fields whose values ``clean()`` must not judge (empty outside ``full_clean``)."""
        return getattr(self, "_not_judged", set())
