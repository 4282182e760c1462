import asyncio

from realtime.outbox import Offer, Outbox


async def drain(outbox: Outbox) -> list[str]:
    frames = []
    while len(outbox):
        frames.append(await outbox.get())
    return frames


async def test_it_keeps_frames_in_order():
    outbox = Outbox(capacity=5)
    for frame in "abc":
        assert outbox.offer(frame) is Offer.QUEUED
    assert await drain(outbox) == ["a", "b", "c"]


async def test_past_the_capacity_a_frame_is_late_and_at_twice_it_refused():
    outbox = Outbox(capacity=2)
    offers = [outbox.offer(str(i)) for i in range(5)]
    assert offers == [Offer.QUEUED, Offer.QUEUED, Offer.LATE, Offer.LATE, Offer.REFUSED]
    assert len(outbox) == 4


async def test_a_snapshot_goes_where_the_hold_began():
    outbox = Outbox(capacity=10)
    outbox.offer("old-1")
    outbox.offer("old-2")
    outbox.hold()
    outbox.offer("new-1")
    # Frames from before the hold may still go out while the snapshot is being built.
    assert await outbox.get() == "old-1"
    outbox.release("snapshot")
    outbox.offer("new-2")
    assert await drain(outbox) == ["old-2", "snapshot", "new-1", "new-2"]


async def test_it_holds_back_frames_offered_during_a_hold():
    outbox = Outbox(capacity=10)
    outbox.hold()
    outbox.offer("event")
    waiter = asyncio.ensure_future(outbox.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    outbox.release("snapshot")
    assert await waiter == "snapshot"
    assert await outbox.get() == "event"


async def test_a_closed_outbox_ends_its_reader_and_refuses_frames():
    outbox = Outbox(capacity=10)
    outbox.offer("a")
    waiter = asyncio.ensure_future(outbox.get())
    assert await waiter == "a"
    waiter = asyncio.ensure_future(outbox.get())
    await asyncio.sleep(0)
    outbox.close()
    assert await waiter is None
    assert outbox.offer("b") is Offer.REFUSED


async def test_wait_for_room_returns_once_back_within_capacity():
    outbox = Outbox(capacity=1)
    outbox.offer("a")
    outbox.offer("b")
    waiter = asyncio.ensure_future(outbox.wait_for_room())
    await asyncio.sleep(0)
    assert not waiter.done()
    await outbox.get()
    await asyncio.wait_for(waiter, 1)
