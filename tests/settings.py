"""Settings for the test run: the project's own, with what a fresh machine lacks set first.

Child processes (manage.py, daphne) started by tests inherit this environment.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-never-used-in-production")

from project.settings import *  # noqa: F403
