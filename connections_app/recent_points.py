"""A check's last results as the dashboard's sparkline draws them, kept on the check's row.

``HealthCheck.recent`` holds the newest ``KEEP`` results, oldest first, as compact JSON text:
``[[t, ok, latency_ms], ...]`` with ``t`` the result's time in Unix milliseconds, ``ok`` 1 or 0
and the latency in milliseconds (two decimals) or null. It changes in the transaction that
stores the results (``state.apply_result``), like the rest of the stored state, so a snapshot
reads one column per check instead of ranking every check's results (300,000 rows for
10,000 checks), and splices the text into its frames without parsing it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db import DEFAULT_DB_ALIAS
from django.db.models import F, Model, Window
from django.db.models.functions import RowNumber

#: Results kept per check: the sparkline's width.
KEEP = 30
EMPTY = "[]"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
#: One point: a list with no list inside.
_POINT = re.compile(r"\[[^\[\]]*\]")
#: Checks whose results ``fill`` ranks in one query.
FILL_GROUP = 500


def point(checked_at: datetime, ok: bool, latency_ms: float | None) -> str:
    """One result as a point's JSON text."""
    latency = "null" if latency_ms is None else json.dumps(round(latency_ms, 2))
    # Whole milliseconds cut, not rounded, as a browser's Date.parse cuts the result's ISO
    # time in an update: the page knows a point it already has by its time.
    return f"[{(checked_at - EPOCH) // MILLISECOND},{1 if ok else 0},{latency}]"


def points(text: str) -> list[str]:
    """The points of a stored ``recent`` text, each as its JSON text, oldest first."""
    return _POINT.findall((text or EMPTY)[1:-1])  # inside the outer list


def add(text: str, new: list[str], keep: int = KEEP) -> str:
    """``text`` with the points ``new`` (oldest first) after its own, only the newest ``keep``
    kept."""
    return "[" + ",".join((points(text) + new)[-keep:]) + "]"


def newest(text: str, keep: int) -> str:
    """The newest ``keep`` points of ``text`` (the text itself when it holds no more)."""
    if keep >= KEEP:  # never more are stored: no need to look
        return text or EMPTY
    found = points(text)
    if len(found) <= keep:
        return text or EMPTY
    return "[" + ",".join(found[-keep:]) + "]"


def fill(
    checks_model: type[Model], results_model: type[Model], using: str = DEFAULT_DB_ALIAS
) -> int:
    """Set every check's ``recent`` from the results already stored (the migration that added
    it; benchmarks that load results in bulk). The checks updated."""
    ids = list(checks_model.objects.using(using).values_list("pk", flat=True))
    updated = 0
    for start in range(0, len(ids), FILL_GROUP):
        group = ids[start : start + FILL_GROUP]
        texts = dict.fromkeys(group, EMPTY) | _texts(results_model, group, using)
        changed = [checks_model(pk=pk, recent=text) for pk, text in texts.items()]
        checks_model.objects.using(using).bulk_update(changed, ["recent"], batch_size=FILL_GROUP)
        updated += len(changed)
    return updated


def _texts(results_model: type[Model], ids: list[int], using: str) -> dict[int, str]:
    ranked = (
        results_model.objects.using(using)
        .filter(health_check_id__in=ids)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("health_check_id")], order_by=F("checked_at").desc()
            )
        )
        .filter(rank__lte=KEEP)
        .order_by("health_check_id", "checked_at")
        .values_list("health_check_id", "checked_at", "ok", "latency_ms")
    )
    found: dict[int, list[str]] = defaultdict(list)
    for check_id, checked_at, ok, latency in ranked:
        found[check_id].append(point(checked_at, ok, latency))
    return {check_id: "[" + ",".join(texts) + "]" for check_id, texts in found.items()}
