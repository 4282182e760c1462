"""How ``runchecks --once`` reports: a table for people, JSON for scripts, an exit code."""

from __future__ import annotations

import json

from connections_app.models import DEGRADED, DOWN, overall_status

EXIT_UP = 0
EXIT_DEGRADED = 1
EXIT_DOWN = 2
EXIT_USAGE = 3


def exit_code(outcomes: list) -> int:
    statuses = {o.status for o in outcomes}
    if DOWN in statuses:
        return EXIT_DOWN
    if DEGRADED in statuses:
        return EXIT_DEGRADED
    return EXIT_UP


def _row(outcome) -> dict:
    return {"name": outcome.check.name, "kind": outcome.check.kind, "status": outcome.status}


def render_json(outcomes: list) -> str:
    document = {
        "status": overall_status([o.status for o in outcomes]),
        "exit_code": exit_code(outcomes),
        "checks": [_row(o) | o.result_dict() for o in outcomes],
    }
    return json.dumps(document, indent=2)


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
    return "\n".join([*lines, "", f"{len(outcomes)} checks, overall {summary}"])


def _detail(result) -> str:
    if result.ok:
        return f"HTTP {result.http_status}" if result.http_status else "ok"
    return f"{result.error_category}: {result.error_message}"[:120]
