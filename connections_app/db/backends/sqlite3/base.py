"""SQLite backend: Django's own, plus the retrying cursor (see connections_app.db)."""

from django.db.backends.sqlite3 import base

from connections_app.db.backends.base import ResilientDatabaseMixin


class DatabaseWrapper(ResilientDatabaseMixin, base.DatabaseWrapper):
    # SQLite runs in this process: a statement that raised was rolled back, never half-sent.
    failed_statements_did_not_run = True
