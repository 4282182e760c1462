"""Settings for the test run: the project's own, with what a fresh machine lacks set first.

Child processes (manage.py, daphne) started by tests inherit this environment.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-never-used-in-production")
# The database layer backs off 1, 2 and 4 s by default: in tests 0.05, 0.1 and 0.2 s, here and
# in every child process. Tests of the backoff itself set their own delays.
os.environ.setdefault("DB_RETRY_BASE_DELAY", "0.05")

from project.settings import *  # noqa: F403

# The test database is SQLite in memory, one per test process: pytest-xdist's workers each get
# their own (pytest-django would otherwise append the worker's name to our backend's file path).
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"].setdefault("TEST", {})["NAME"] = ":memory:"  # noqa: F405
