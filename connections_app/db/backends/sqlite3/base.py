"""SQLite backend: Django's own, plus the retrying cursor (see connections_app.db)."""

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    pass
