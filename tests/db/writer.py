"""A helper process for the concurrency test: write rows through the app's own settings.

Usage (from the repository root, DATABASE_URL set): python -m tests.db.writer WORKER ROWS.
Prints "ready" after Django is set up, then waits for a line on stdin so that every worker
starts writing at the same moment. Half the rows are single autocommit inserts, half are
``retry_transaction`` blocks of an insert and an update.
"""

import os
import sys
from datetime import UTC, datetime, timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django

django.setup()

from connections_app.db.transactions import retry_transaction  # noqa: E402
from connections_app.models import CheckResult, HealthCheck  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)


@retry_transaction
def write_in_transaction(check: HealthCheck, at: datetime) -> None:
    CheckResult.objects.create(health_check=check, checked_at=at, ok=False)
    HealthCheck.objects.filter(pk=check.pk).update(next_due_at=at)


def main(worker: int, rows: int) -> None:
    check = HealthCheck.objects.create(name=f"worker-{worker}", kind="tcp", target="127.0.0.1:9")
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(rows):
        at = START + timedelta(seconds=n)
        if n % 2:
            CheckResult.objects.create(health_check=check, checked_at=at, ok=True)
        else:
            write_in_transaction(check, at)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
