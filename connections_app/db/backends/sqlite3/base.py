"""SQLite backend: Django's own, plus the retrying cursor (see connections_app.db) and the
function that sorts by values sent with a query (``db.sort_keys``)."""

from django.db.backends.sqlite3 import base

from connections_app.db import sort_keys
from connections_app.db.backends.base import ResilientDatabaseMixin


class DatabaseWrapper(ResilientDatabaseMixin, base.DatabaseWrapper):
    # SQLite runs in this process: a statement that raised was rolled back, never half-sent.
    failed_statements_did_not_run = True

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        sort_keys.register(connection)
        return connection
