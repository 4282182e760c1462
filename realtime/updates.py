"""Coalescing: every change a runner stored, handed to each client as one ``updates`` frame per
flush (about one a second), whatever the rate of results.

With one frame per result, 1,000 checks at 10 s were 100 frames a second to every browser, and
daphne's write path costs about 90 us a frame: 50 browsers took a core. Here the hub keeps what
arrived since its last flush (``Pending``) and writes one frame per client per flush
(``Limits.flush_interval``), so the cost per browser is one frame a second.

An entry travels pre-encoded: the publisher serializes each result and each status change once
(``entry``), the layer carries the texts, and a frame is the texts joined. A client with a
tag filter, or a check's page, gets only the entries that pass it (``protocol.shown``); one
frame body is built per distinct ``Watch``.

Bounds: a check with more pending results than the sparkline shows keeps its newest; a frame
over ``Limits.frame_bytes`` is cut into several (all sent in the same flush, in order); more
than ``Limits.max_pending`` entries waiting (a hub that cannot write) are dropped and every
client resyncs from a snapshot instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from realtime.protocol import Watch, compact_json, now_iso, shown

#: The frame type of a batch of results and status changes (docs/EVENTS.md).
UPDATES = "updates"
#: The events a runner announces that are coalesced (the others go out as frames of their own).
RESULT, STATUS, RESULTS = "check.result", "check.status", "check.results"
COALESCED = frozenset({RESULT, STATUS, RESULTS})


@dataclass(frozen=True)
class Entry:
    """One result or status change: whose (``name``; ``check``, its id, and ``tags`` for the
    filters, ``protocol.shown``: both None pass every dashboard's) and its JSON text, encoded
    once by the publisher."""

    name: str
    tags: frozenset[str] | None
    text: str
    check: int | None = None

    def wire(self) -> list:
        """The entry as the layer carries it (msgpack has no sets)."""
        tags = sorted(self.tags) if self.tags is not None else None
        return [self.name, tags, self.text, self.check]

    @classmethod
    def from_wire(cls, value: list) -> Entry:
        # Three items from a publisher older than the check id (a rolling upgrade).
        name, tags, text, check = (*value, None) if len(value) == 3 else value
        return cls(
            str(name),
            frozenset(tags) if tags is not None else None,
            str(text),
            check if isinstance(check, int) else None,
        )


def entry(data: dict, name: str, tags: Any, check: Any = None) -> Entry:
    """An entry for ``data`` (already redacted), serialized as the frame will carry it."""
    text = compact_json(data)
    return Entry(
        str(name),
        frozenset(tags) if isinstance(tags, list) else None,
        text,
        check if isinstance(check, int) and not isinstance(check, bool) else None,
    )


def result_entry(data: dict) -> Entry:
    """A result (``{"check", "result", "uptime_24h", "uptime", "latency_24h"}``, from a
    ``check.results`` event or a single ``check.result``) as an entry."""
    check = data.get("check") if isinstance(data.get("check"), dict) else {}
    return entry(data, check.get("name", ""), check.get("tags"), check.get("id"))


def status_entry(data: dict) -> Entry:
    """A ``check.status`` event (``{"id", "name", "tags", "from", "to", ...}``) as an entry."""
    return entry(data, data.get("name", ""), data.get("tags"), data.get("id"))


@dataclass
class Pending:
    """What arrived since the last flush, in arrival order; bounded."""

    max_pending: int
    results: list[Entry] = field(default_factory=list)
    statuses: list[Entry] = field(default_factory=list)
    overflowed: bool = False

    def __len__(self) -> int:
        return len(self.results) + len(self.statuses)

    def __bool__(self) -> bool:
        """Whether a flush has work: entries, or an overflow to turn into a resync."""
        return self.overflowed or len(self) > 0

    def add(self, results: Iterable[Entry], statuses: Iterable[Entry]) -> None:
        """Keep ``results`` and ``statuses``; past ``max_pending`` keep nothing and remember
        that the clients must resync (a snapshot tells them everything)."""
        if self.overflowed:
            return
        self.results.extend(results)
        self.statuses.extend(statuses)
        if len(self) > self.max_pending:
            self.results, self.statuses, self.overflowed = [], [], True

    def take(self) -> tuple[list[Entry], list[Entry], bool]:
        """Everything pending (and whether some was dropped), leaving it empty."""
        taken = (self.results, self.statuses, self.overflowed)
        self.results, self.statuses, self.overflowed = [], [], False
        return taken


def newest_per_check(results: list[Entry], keep: int) -> list[Entry]:
    """``results`` with at most the ``keep`` newest of each check, in their order: the page
    shows the last ``keep`` results of a check, older ones it would throw away."""
    counts = Counter(e.name for e in results)
    if not counts or max(counts.values()) <= keep:
        return results
    seen: Counter[str] = Counter()
    kept = []
    for item in reversed(results):
        seen[item.name] += 1
        if seen[item.name] <= keep:
            kept.append(item)
    kept.reverse()
    return kept


def passes(item: Entry, watch: Watch) -> bool:
    """Whether an entry reaches a client watching ``watch``."""
    return shown(watch, item.check, item.tags)


def bodies(results: list[Entry], statuses: list[Entry], watch: Watch, max_bytes: int) -> list[str]:
    """The ``updates`` frame bodies for a client watching ``watch``: one, or several when one
    would pass ``max_bytes``; none when nothing passes its filter."""
    results = [e for e in results if passes(e, watch)]
    statuses = [e for e in statuses if passes(e, watch)]
    if not results and not statuses:
        return []
    at = now_iso()
    return [_body(r, s, at) for r, s in _chunks(results, statuses, max_bytes)]


def _chunks(
    results: list[Entry], statuses: list[Entry], max_bytes: int
) -> Iterator[tuple[list[Entry], list[Entry]]]:
    """Results then statuses, cut so that each chunk's texts stay under ``max_bytes`` (an
    entry larger than that alone goes in a chunk of its own). Order is kept across chunks."""
    chunk_results: list[Entry] = []
    chunk_statuses: list[Entry] = []
    size = 0
    tagged = [(e, True) for e in results] + [(e, False) for e in statuses]
    for item, is_result in tagged:
        cost = len(item.text) + 1
        if size + cost > max_bytes and (chunk_results or chunk_statuses):
            yield chunk_results, chunk_statuses
            chunk_results, chunk_statuses, size = [], [], 0
        (chunk_results if is_result else chunk_statuses).append(item)
        size += cost
    yield chunk_results, chunk_statuses


def _body(results: list[Entry], statuses: list[Entry], at: str) -> str:
    """An ``updates`` body (as ``protocol.encode_event`` would make it) from encoded texts."""
    joined_results = ",".join(e.text for e in results)
    joined_statuses = ",".join(e.text for e in statuses)
    return (
        f'{{"type":"{UPDATES}","at":"{at}","data":'
        f'{{"results":[{joined_results}],"statuses":[{joined_statuses}]}}}}'
    )
