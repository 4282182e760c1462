"""``manage.py importchecks FILE``: create or update checks from a JSON list, all or nothing.

Each item has the model's field names (``name`` and ``target`` required). A check with the same
name is updated. Any invalid item stops the import with its position and field named, and
nothing is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from connections_app.checks_report import EXIT_USAGE
from connections_app.models import HealthCheck

IMPORTABLE = {
    "name",
    "kind",
    "target",
    "interval",
    "timeout",
    "failures_before_down",
    "expected_status_min",
    "expected_status_max",
    "expected_body",
    "enabled",
    "critical",
    "tags",
}


class Command(BaseCommand):
    help = "Create or update health checks from a JSON file (a list of objects); - reads stdin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")

    def handle(self, *args, **options) -> None:
        items = _load(options["file"])
        try:
            created, updated = import_checks(items)
        except ValueError as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None
        self.stdout.write(f"{created} checks created, {updated} updated")


def _load(path: str) -> list:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        items = json.loads(text)
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}", returncode=EXIT_USAGE) from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not JSON: {exc}", returncode=EXIT_USAGE) from None
    if not isinstance(items, list):
        raise CommandError(f"{path}: expected a JSON list of checks", returncode=EXIT_USAGE)
    return items


@transaction.atomic
def import_checks(items: list) -> tuple[int, int]:
    """Validate and save every item, or raise ValueError naming the first bad one."""
    created = updated = 0
    for position, item in enumerate(items, start=1):
        check, is_new = _build(position, item)
        check.save()
        created += is_new
        updated += not is_new
    return created, updated


def _build(position: int, item: object) -> tuple[HealthCheck, bool]:
    where = f"check #{position}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
    unknown = sorted(set(item) - IMPORTABLE)
    if unknown:
        raise ValueError(f"{where}: unknown field {', '.join(unknown)}")
    if not item.get("name"):
        raise ValueError(f"{where}: name: this field is required")
    where = f"check #{position} ({item['name']!r})"
    check = HealthCheck.objects.filter(name=item["name"]).first()
    is_new = check is None
    check = check or HealthCheck()
    for field, value in item.items():
        setattr(check, field, value)
    try:
        check.full_clean()
    except ValidationError as exc:
        field, errors = next(iter(exc.message_dict.items()))
        raise ValueError(f"{where}: {field}: {' '.join(errors)}") from None
    return check, is_new
