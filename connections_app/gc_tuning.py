"""How a long-running runner's process collects garbage.

A runner allocates a few objects per result (a task, a request, a row) that die young, and
keeps thousands that live long (Django, the checks it claimed). With Python's defaults a young
collection ran every 700 allocations, and each full one walked every long-lived object with the
event loop and the database thread stopped: 22 % of the worker's CPU at 1,000 results/s, and
stalls that every probe in flight waited out (py-spy, docs/BENCHMARKS.md, issue 12).
"""

from __future__ import annotations

import gc

#: Allocations between two young collections (default 700), young collections between two of
#: the middle generation (10), and of those between two full ones (10). Young objects here are
#: mostly freed by reference counting; what the collector exists for (cycles) is rare.
THRESHOLDS = (50_000, 20, 20)


def settle_long_lived() -> None:
    """Leave everything alive now (Django, the apps, settings) out of every later collection,
    and collect less often. Call once, at the start of a long-running command."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
