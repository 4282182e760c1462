"""The fault suite's invariants, computed from the database, the clients, the webhook
receiver, the logs and the memory samples; printed as one table.

Each invariant is ``(name, holds, figures)``. The suite fails on any that does not hold; the
table is printed either way, so a failure shows every figure at once.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.soak.clients import Reader

Query = Callable[[str], list[tuple]]
#: A change stored this shortly before a page closed may still be on its way to it.
IN_FLIGHT = timedelta(seconds=2)


@dataclass
class Invariant:
    name: str
    holds: bool
    figures: str


def table(rows: Iterable[Invariant]) -> str:
    rows = list(rows)
    width = max(len(row.name) for row in rows)
    lines = [f"{'invariant':<{width}}  ok    figures", f"{'-' * width}  ----  -------"]
    lines += [f"{r.name:<{width}}  {'yes' if r.holds else 'NO':<4}  {r.figures}" for r in rows]
    return "\n".join(lines)


def when(value: datetime | str) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives text, PostgreSQL datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def runs_accounted(query: Query, names: list[str], max_gap: float) -> Invariant:
    """Every run the runners started has a stored result or is counted as not stored (dropped
    or still pending), and no check of ``names`` has a gap longer than ``max_gap`` seconds
    between results unless results were dropped."""
    runs, skipped, missed, dropped, pending, running = query(
        "SELECT sum(runs), sum(runs_skipped), sum(runs_missed), sum(results_dropped), "
        "sum(results_pending), sum(probes_running) FROM connections_app_runner"
    )[0]
    stopped = query("SELECT count(*) FROM connections_app_runner WHERE stopped_at IS NULL")[0][0]
    rows = query("SELECT count(*) FROM connections_app_checkresult")[0][0]
    missing = runs - rows - dropped - pending - running
    gaps = _longest_gaps(query, names)
    worst = max(gaps.values(), default=0.0)
    # A gap is accounted for when its runs were counted: dropped, or missed (never run).
    holds = missing == 0 and stopped == 0 and (worst <= max_gap or dropped + missed > 0)
    figures = (
        f"runs {runs} = results {rows} + dropped {dropped} + pending {pending} + running "
        f"{running} (missing {missing}); skipped {skipped}; missed {missed}; "
        f"longest gap {worst:.1f} s (limit {max_gap:.1f} s); runners not stopped {stopped}"
    )
    return Invariant("every run has a result or a count", holds, figures)


def _longest_gaps(query: Query, names: list[str]) -> dict[str, float]:
    rows = query(
        "SELECT c.name, r.checked_at FROM connections_app_checkresult r "
        "JOIN connections_app_healthcheck c ON c.id = r.health_check_id "
        "ORDER BY c.name, r.checked_at"
    )
    times: dict[str, list[datetime]] = defaultdict(list)
    for name, checked_at in rows:
        if name in names:
            times[name].append(when(checked_at))
    return {
        name: max(((b - a).total_seconds() for a, b in zip(ts, ts[1:], strict=False)), default=0)
        for name, ts in times.items()
    }


def outage_recorded(query: Query, check: str = "self: database") -> Invariant:
    """The database's own outage is in the history: the runner kept checking while it was
    away, and the self-check's failures (taken then, stored after) moved it to DOWN."""
    failed = query(
        "SELECT count(*) FROM connections_app_checkresult r JOIN connections_app_healthcheck c "
        f"ON c.id = r.health_check_id WHERE c.name = '{check}' AND NOT r.ok"
    )[0][0]
    down = query(
        "SELECT count(*) FROM connections_app_statechange s JOIN connections_app_healthcheck c "
        f"ON c.id = s.health_check_id WHERE c.name = '{check}' AND s.to_status = 'down'"
    )[0][0]
    figures = f"{check!r}: {failed} failed results, {down} changes to DOWN"
    return Invariant("the database outage is recorded", failed > 0 and down > 0, figures)


def state_changes(query: Query) -> list[tuple[str, str, str, datetime]]:
    rows = query(
        "SELECT c.name, s.from_status, s.to_status, s.at FROM connections_app_statechange s "
        "JOIN connections_app_healthcheck c ON c.id = s.health_check_id ORDER BY s.at"
    )
    return [(name, from_, to, when(at)) for name, from_, to, at in rows]


def uncovered(readers: list[Reader], changes: list[tuple]) -> list[tuple[int, tuple]]:
    """(reader, change) pairs where a healthy page neither got the event nor resynced after it
    (changes before the page's first snapshot are in that snapshot; changes after the page
    closed, or less than ``IN_FLIGHT`` seconds before, are not its to see)."""
    missed = []
    for index, reader in enumerate(readers):
        start, end = reader.first_snapshot, reader.stopped_at
        for change in changes:
            seen = start is not None and change[3] > start
            if end is not None:
                seen = seen and change[3] < end - IN_FLIGHT
            if seen and not reader.covered(*change):
                missed.append((index, change))
    return missed


def transitions_delivered(
    readers: list[Reader], changes: list[tuple], started: datetime
) -> Invariant:
    missed = uncovered(readers, changes)
    without_snapshot = sum(reader.first_snapshot is None for reader in readers)
    events = sum(len(reader.changes) for reader in readers)
    resyncs = sum(max(0, len(reader.snapshots) - 1) for reader in readers)
    # When the missed changes happened, in seconds into the run (to line up with the faults).
    missed_at = sorted({round((change[3] - started).total_seconds(), 1) for _, change in missed})
    figures = (
        f"{len(changes)} transitions x {len(readers)} pages: {events} events received, "
        f"{resyncs} resync snapshots, {len(missed)} missed"
        + (f" (changes at {missed_at[:8]} s)" if missed else "")
        + (f"; {without_snapshot} pages never got a snapshot" if without_snapshot else "")
    )
    holds = not missed and not without_snapshot
    return Invariant("every transition reached every page", holds, figures)


def alerts_once(query: Query, received: list[dict]) -> Invariant:
    """Every alert row was delivered (2xx at the receiver), nothing unknown arrived, and no
    transition was alerted under two keys. Resends of one key are counted: the key is there
    so that the receiver drops them."""
    rows = query("SELECT id, status FROM connections_app_alert")
    statuses = Counter(status for _, status in rows)
    ids = {str(pk) for pk, _ in rows}
    delivered = Counter(r["key"] for r in received if r["status"] and r["status"] < 300)
    lost = sorted(ids - set(delivered), key=int)
    unknown = sorted(set(delivered) - ids)
    about: dict[tuple, set[str]] = defaultdict(set)
    for record in received:
        body = record["body"]
        check = (body.get("check") or {}).get("name")
        about[(check, body.get("kind"), body.get("from"), body.get("to"), body.get("since"))].add(
            record["key"]
        )
    doubled = [facts for facts, keys in about.items() if len(keys) > 1]
    resent = sum(count - 1 for count in delivered.values())
    holds = not lost and not unknown and not doubled
    figures = (
        f"{len(rows)} alerts {dict(statuses)}; delivered {len(delivered)}, lost {len(lost)}"
        f"{' ' + str(lost[:5]) if lost else ''}, unknown keys {len(unknown)}, doubled "
        f"{len(doubled)}{' ' + str(doubled[:2]) if doubled else ''}; resends of one key {resent}"
    )
    return Invariant("no alert lost or doubled", holds, figures)


def no_tracebacks(logs: dict[str, Path]) -> Invariant:
    found = {}
    for name, path in logs.items():
        text = path.read_text(errors="replace") if path.exists() else ""
        count = len(re.findall(r"^Traceback \(most recent call last\)", text, re.MULTILINE))
        if count:
            found[name] = count
    figures = ", ".join(f"{name}: {n}" for name, n in found.items()) or (
        f"none in {', '.join(logs)}"
    )
    return Invariant("no traceback in any log", not found, figures)


def first_traceback(logs: dict[str, Path]) -> str:
    for name, path in logs.items():
        text = path.read_text(errors="replace") if path.exists() else ""
        start = text.find("Traceback (most recent call last)")
        if start >= 0:
            return f"{name}:\n{text[max(0, start - 300) : start + 3000]}"
    return ""


def rss_flat(samples: dict[str, list[tuple[float, int]]], limit: float = 0.10) -> Invariant:
    """Resident memory over the second half of the run grows by less than ``limit``: the median
    of its first five samples against the median of its last five."""
    growth = {}
    for name, points in samples.items():
        end = points[-1][0] if points else 0
        second = [kib for at, kib in points if at >= end / 2]
        if len(second) >= 10:
            start, last = statistics.median(second[:5]), statistics.median(second[-5:])
            growth[name] = (last - start) / start
    holds = bool(growth) and all(g < limit for g in growth.values())
    figures = ", ".join(
        f"{name} {samples[name][-1][1] // 1024} MiB ({g:+.1%})" for name, g in growth.items()
    )
    return Invariant("RSS flat over the second half", holds, figures or "too few samples")
