"""One hub per event loop: a loop that closed leaves nothing behind for the next one."""

import asyncio

import pytest

from realtime.hub import get_hub, serving_loop
from tests.realtime.conftest import connected
from tests.realtime.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_hub_stopped_in_a_loop_that_closed_is_not_awaited_by_the_next(staff_cookie, settings):
    # What a test run used to trip over: the last client left, the hub stopped, that loop
    # closed; the next loop's first client found the old run "stopping" and awaited its task.
    settings.DASHBOARD_LIMITS = {"heartbeat": 0.05}

    async def watch_then_leave():
        socket, _snapshot = await connected(staff_cookie)
        hub = get_hub()
        assert get_hub() is hub
        assert serving_loop() is asyncio.get_running_loop()
        await socket.disconnect()
        await wait_until(lambda: not hub.running)  # stopped by its own heartbeat
        return hub

    with asyncio.Runner() as runner:
        first = runner.run(watch_then_leave())
    assert serving_loop() is None
    with asyncio.Runner() as runner:
        second = runner.run(watch_then_leave())
    assert second is not first


async def test_a_publisher_in_another_thread_finds_the_serving_loop(staff_cookie):
    assert serving_loop() is None  # nobody watches yet
    socket, _snapshot = await connected(staff_cookie)
    loop = asyncio.get_running_loop()
    assert await asyncio.to_thread(serving_loop) is loop
    await socket.disconnect()
    await get_hub().stop()
    assert serving_loop() is None
