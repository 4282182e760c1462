"""Waking on ticks: coroutines that sleep until about the same time wake in one turn of the
event loop.

Each turn of an asyncio loop has a fixed cost (a poll of the selector, its timers), whatever it
runs. A runner whose probes each sleep until their own due time pays it once per probe: a bare
aiohttp loop making 100 requests a second, started one by one, spent 0.68 ms of CPU per request,
and 0.31 ms when started on 0.1 s ticks (``bench_runner.py --raw-rates``; docs/BENCHMARKS.md,
"Starting on ticks").
"""

from __future__ import annotations

import asyncio
import math

#: The runner's probes claimed ahead of their due times start on ticks this far apart
#: (seconds): at most this much lag, for one turn of the event loop per tick.
START_TICK = 0.1


async def sleep_to_tick(seconds: float, tick: float) -> None:
    """Sleep until the first multiple of ``tick`` on the loop's clock at least ``seconds`` away.

    Every sleeper of one tick gets the same deadline (the same float), so one timer turn of the
    loop wakes them all.
    """
    loop = asyncio.get_running_loop()
    when = math.ceil((loop.time() + seconds) / tick) * tick
    woken = loop.create_future()
    timer = loop.call_at(when, _wake, woken)
    try:
        await woken
    finally:
        timer.cancel()


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():  # cancelled meanwhile
        waiter.set_result(None)
