"""``ticks.sleep_to_tick``: sleepers of one tick wake in one turn of the loop, none early."""

from __future__ import annotations

import asyncio

import pytest

from connections_app.ticks import sleep_to_tick


async def test_sleepers_of_one_tick_wake_together_and_none_before_its_time():
    loop = asyncio.get_running_loop()
    tick = 0.5
    # Start just after a tick, so waits of 10 to 50 ms all end before the next one (with 450 ms
    # to spare for a busy machine).
    await sleep_to_tick(0, tick)
    woke: list[tuple[float, float]] = []
    turn_after_first: list[int] = []

    async def sleeper(seconds: float) -> None:
        asked = loop.time() + seconds
        await sleep_to_tick(seconds, tick)
        if not woke:
            # Runs one turn after the first sleeper resumed: every sleeper woken by the same
            # timer turn has resumed by then.
            loop.call_soon(lambda: turn_after_first.append(len(woke)))
        woke.append((asked, loop.time()))

    await asyncio.gather(*(sleeper(0.01 * n) for n in range(1, 6)))
    assert turn_after_first == [5]
    assert all(at >= asked for asked, at in woke)


async def test_a_cancelled_sleeper_leaves_no_timer_behind():
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(sleep_to_tick(30, 0.1))
    await asyncio.sleep(0)

    def far_timers() -> int:
        # The loop's own list of timers (no public one): those set for the sleeper, 30 s on.
        later = loop.time() + 20
        return sum(not t.cancelled() and t.when() > later for t in loop._scheduled)

    assert far_timers() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert far_timers() == 0
