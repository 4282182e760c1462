"""``manage.py dbstats``: what ``get_database_stats`` knows about one database, for people or
scripts. Exit 3, with one line, when the database cannot be read."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from connections_app.cli import EXIT_USAGE
from connections_app.db.fail_fast import fail_fast
from connections_app.db.health import get_database_stats
from connections_app.errors import missing_tables_message
from connections_app.management.usage import UsageExitMixin
from connections_app.models import CheckResult, ErrorStat, HealthCheck
from connections_app.redaction import redact

OUR_TABLES = [m._meta.db_table for m in (HealthCheck, CheckResult, ErrorStat)]


class Command(UsageExitMixin, BaseCommand):
    help = (
        "Show a database's engine, size, row counts of our tables, this process's connection "
        "age and its retries and reconnects. Exit 3 when the database cannot be read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, choices=list(connections))
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args, **options) -> None:
        try:
            # A question asked at a terminal: answer now rather than wait out a restart.
            with fail_fast():
                stats = get_database_stats(options["database"], OUR_TABLES)
        except DatabaseError as exc:
            # One line, whatever the driver said; for a database never migrated, what to do.
            reason = missing_tables_message(exc) or " ".join(redact(str(exc)).split())
            raise CommandError(
                f"cannot read database {options['database']!r}: {reason}", returncode=EXIT_USAGE
            ) from None
        render = render_json if options["format"] == "json" else render_table
        self.stdout.write(render(stats))


def render_json(stats: dict) -> str:
    return json.dumps(stats, indent=2)


def render_table(stats: dict) -> str:
    age = stats["connection_age_s"]
    rows = [
        ("alias", stats["alias"]),
        ("engine", stats["engine"]),
        ("size", f"{stats['size_bytes']:,} bytes"),
        *((f"rows in {table}", f"{count:,}") for table, count in stats["rows"].items()),
        ("connection age", "-" if age is None else f"{age:.1f} s"),
        ("retries", str(stats["retries"])),
        ("reconnects", str(stats["reconnects"])),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
