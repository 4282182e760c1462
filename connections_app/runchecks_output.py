"""How ``runchecks --once`` reports: a table for people, JSON for scripts, an exit code.

The table's DETAIL is one line of at most ``DETAIL_WIDTH`` characters, cut between words with an
ellipsis; the JSON document carries every error message in full.
"""

from __future__ import annotations

import json

from connections_app.cli import EXIT_DEGRADED, EXIT_DOWN, EXIT_UP, counted
from connections_app.models import DEGRADED, DOWN, overall_status

DETAIL_WIDTH = 120
ELLIPSIS = "..."


def exit_code(outcomes: list) -> int:
    statuses = {o.status for o in outcomes}
    if DOWN in statuses:
        return EXIT_DOWN
    if DEGRADED in statuses:
        return EXIT_DEGRADED
    return EXIT_UP


def _row(outcome) -> dict:
    check = outcome.check
    return {
        "name": check.name,
        "kind": check.kind,
        "enabled": check.enabled,
        "status": outcome.status,
    }


def render_json(outcomes: list, figures: dict[int, dict] | None = None) -> str:
    """The document for scripts; ``figures`` (``summary.history_figures``) adds each check's
    uptime over 24 h / 7 d / 30 d / 90 d and its latency percentiles."""
    figures = figures or {}
    document = {
        "status": overall_status([o.status for o in outcomes]),
        "exit_code": exit_code(outcomes),
        "checks": [
            _row(o) | _rounded(o.result_dict()) | _history(figures.get(o.check.pk))
            for o in outcomes
        ],
    }
    return json.dumps(document, indent=2)


def _history(found: dict | None) -> dict:
    if found is None:
        return {"uptime": dict.fromkeys(("24h", "7d", "30d", "90d")),
                "latency_24h": dict.fromkeys(("p50", "p95", "p99"))}  # fmt: skip
    return {"uptime": found["uptime"], "latency_24h": found["latency_24h"]}


def _rounded(result: dict) -> dict:
    """Latency to 2 decimals: a hundredth of a millisecond is already below the clock's noise."""
    latency = result["latency_ms"]
    return result | {"latency_ms": None if latency is None else round(latency, 2)}


def render_table(outcomes: list) -> str:
    header = ("CHECK", "KIND", "STATUS", "LATENCY", "DETAIL")
    rows = [header] + [
        (
            o.check.name,
            o.check.kind,
            o.status.upper(),
            f"{o.result.latency_ms:.1f} ms" if o.result.latency_ms is not None else "-",
            _detail(o.result),
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    summary = overall_status([o.status for o in outcomes]).upper()
    return "\n".join([*lines, "", f"{counted(len(outcomes), 'check')}, overall {summary}"])


def _detail(result) -> str:
    if result.ok:
        return f"HTTP {result.http_status}" if result.http_status else "ok"
    category = f"{result.error_category}: " if result.error_category else ""
    return shorten(f"{category}{result.error_message}", DETAIL_WIDTH)


def shorten(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters: when longer, cut at the last space
    that leaves room for an ellipsis (mid-word only for a single word longer than the line)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    room = width - len(ELLIPSIS)
    cut = text.rfind(" ", 0, room + 1)
    head = text[:cut] if cut > 0 else text[:room]
    return head.rstrip(" ,;:") + ELLIPSIS
