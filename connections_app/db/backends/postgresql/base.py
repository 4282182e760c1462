"""PostgreSQL backend: Django's own, plus the retrying cursor (see connections_app.db)."""

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    pass
