"""Coalescing: results and status changes reach each client as one ``updates`` frame per flush,
in order, bounded in size, filtered per client; publishers send a runner's flush as few layer
messages; nothing is published while nobody watches."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from connections_app import events
from realtime import audience, publish
from realtime.broadcast import run_sender
from realtime.hub import Hub
from realtime.protocol import Watch
from realtime.registry import registry
from realtime.updates import Entry, newest_per_check, result_entry, status_entry
from tests.realtime.conftest import connected, receive
from tests.realtime.helpers import FAST, Socket, make_client, wait_until


@pytest.fixture
async def clients():
    """Clients registered in this process, each with its sender; all gone after the test."""
    made: list[tuple[Socket, object]] = []

    def make(tags: frozenset[str] | None = None, **limits) -> Socket:
        socket = Socket()
        client = make_client(socket, **limits)
        client.watch = Watch(tags=tags)
        registry.add(client)
        client.start(run_sender(client, FAST))
        made.append((socket, client))
        return socket

    yield make
    for _socket, client in made:
        client.shutdown("test over")
    registry.clear()


def result(name: str, i: int, tags: list[str] | None = None) -> dict:
    return {
        "check": {"name": name, "tags": tags or [], "status": "up"},
        "result": {"checked_at": f"2026-01-01T00:00:{i:02d}+00:00", "ok": True, "i": i},
        "uptime_24h": 1.0,
    }


def change(name: str, to: str, tags: list[str] | None = None) -> dict:
    return {"name": name, "tags": tags or [], "from": "up", "to": to}


def message(n: int, results=(), statuses=()) -> dict:
    return {
        "type": "dashboard.updates",
        "publisher": "p",
        "n": n,
        "results": [result_entry(r).wire() for r in results],
        "statuses": [status_entry(s).wire() for s in statuses],
    }


async def test_a_burst_of_results_is_one_frame_per_client_in_order(clients):
    sockets = [clients() for _ in range(3)]
    hub = Hub()
    for n in range(1, 11):  # ten runner flushes of 50 results, one change each
        results = [result(f"c{k}", n) for k in range(50)]
        await hub._dispatch(message(n, results, [change(f"c{n}", "down")]))
    await hub.flush_updates()
    await wait_until(lambda: all(s.frames for s in sockets))
    for socket in sockets:
        (frame,) = socket.frames
        assert frame["type"] == "updates"
        got = [(r["check"]["name"], r["result"]["i"]) for r in frame["data"]["results"]]
        assert got == [(f"c{k}", n) for n in range(1, 11) for k in range(50)]
        assert [s["name"] for s in frame["data"]["statuses"]] == [f"c{n}" for n in range(1, 11)]
    # Nothing left over: the next flush writes nothing.
    await hub.flush_updates()
    await asyncio.sleep(0.05)
    assert [len(s.frames) for s in sockets] == [1, 1, 1]


async def test_sequence_numbers_go_on_across_frames_of_any_kind(clients):
    socket = clients()
    hub = Hub()
    await hub._dispatch(message(1, [result("a", 1)], [change("a", "down")]))
    await hub.flush_updates()
    await hub._dispatch(message(2, [result("a", 2)], [change("a", "up")]))
    await hub.flush_updates()
    await wait_until(lambda: len(socket.frames) == 2)
    assert [f["seq"] for f in socket.frames] == [2, 3]  # 1 was the snapshot
    assert [f["data"]["statuses"][0]["to"] for f in socket.frames] == ["down", "up"]


async def test_a_frame_larger_than_the_bound_is_cut_in_order(clients, settings):
    settings.DASHBOARD_LIMITS = {"updates_frame_bytes": 4096}
    socket = clients()
    hub = Hub()
    await hub._dispatch(
        message(1, [result(f"c{k}", 1) for k in range(200)], [change("c1", "down")])
    )
    await hub.flush_updates()
    await wait_until(lambda: sum(len(f["data"]["results"]) for f in socket.frames) == 200)
    await wait_until(lambda: any(f["data"]["statuses"] for f in socket.frames))
    assert len(socket.frames) > 1
    for frame in socket.frames:
        assert len(json.dumps(frame, separators=(",", ":"))) <= 4096 + 200  # plus the envelope
    names = [r["check"]["name"] for f in socket.frames for r in f["data"]["results"]]
    assert names == [f"c{k}" for k in range(200)]
    assert socket.frames[-1]["data"]["statuses"][0]["name"] == "c1"


async def test_each_client_gets_only_what_its_filter_passes(clients):
    everything, web = clients(), clients(tags=frozenset({"web"}))
    hub = Hub()
    results = [result("api", 1, ["web"]), result("db", 1, ["db"])]
    await hub._dispatch(message(1, results, [change("db", "down", ["db"])]))
    await hub.flush_updates()
    await wait_until(lambda: everything.frames and web.frames)
    (all_frame,), (web_frame,) = everything.frames, web.frames
    assert [r["check"]["name"] for r in all_frame["data"]["results"]] == ["api", "db"]
    assert [r["check"]["name"] for r in web_frame["data"]["results"]] == ["api"]
    assert web_frame["data"]["statuses"] == []


def test_a_check_keeps_only_as_many_pending_results_as_its_sparkline_shows():
    entries = [Entry("a", None, str(i)) for i in range(50)] + [Entry("b", None, "b")]
    kept = newest_per_check(entries, 30)
    assert [e.text for e in kept] == [str(i) for i in range(20, 50)] + ["b"]


async def test_too_much_pending_is_dropped_and_every_client_resyncs(clients, settings):
    settings.DASHBOARD_LIMITS = {"max_pending": 10}
    socket = clients()
    hub = Hub()
    resyncs = []
    hub.request_resync = lambda: resyncs.append(1)
    await hub._dispatch(message(1, [result(f"c{k}", 1) for k in range(11)]))
    await wait_until(lambda: resyncs == [1])  # the flush that was scheduled asks for it
    await hub._dispatch(message(2, [result("a", 2)]))  # kept again after the overflow
    await wait_until(lambda: len(socket.frames) == 1)
    assert [r["check"]["name"] for r in socket.frames[0]["data"]["results"]] == ["a"]
    await hub.stop()


async def test_flushes_are_at_least_the_interval_apart(clients, settings):
    settings.DASHBOARD_LIMITS = {"flush_interval": 0.3, "flush_gather": 0.0}
    socket = clients()
    hub = Hub()
    loop = asyncio.get_running_loop()
    flushed_at = []
    flush = hub.flush_updates

    async def timed_flush() -> None:
        # When the hub flushed, not when the test's poll noticed the frame: a late poll on a
        # busy machine would shorten the gap it sees.
        flushed_at.append(loop.time())
        await flush()

    hub.flush_updates = timed_flush
    for n in range(1, 4):
        await hub._dispatch(message(n, [result("a", n)]))
        await wait_until(lambda n=n: len(socket.frames) == n)
    # Each event came as soon as the previous frame arrived: still a flush interval apart.
    assert len(flushed_at) == 3
    assert all(b - a >= 0.3 - 1e-3 for a, b in zip(flushed_at, flushed_at[1:], strict=False))
    await hub.stop()


async def test_a_runners_flush_travels_in_chunks_numbered_in_order(staff_cookie):
    publish.reset()
    socket, _ = await connected(staff_cookie)
    results = [result(f"c{k}", 1) for k in range(1200)]
    messages = publish.updates_messages("check.results", {"results": results, "changes": []})
    assert [len(m["results"]) for m in messages] == [500, 500, 200]
    assert [m["n"] for m in messages] == [1, 2, 3]
    publish.reset()  # numbers 1 to 3 never reached the hub: start again, no gap
    changes = [change("c0", "down")]
    await publish.publish_event("check.results", {"results": results, "changes": changes})
    got, statuses = [], []
    while len(got) < 1200 or not statuses:
        frame = await receive(socket)
        assert frame["type"] == "updates"
        got += [r["check"]["name"] for r in frame["data"]["results"]]
        statuses += frame["data"]["statuses"]
    assert got == [f"c{k}" for k in range(1200)]
    assert statuses[0]["name"] == "c0"
    await socket.disconnect()


async def test_nothing_is_built_while_no_dashboard_watches(staff_cookie):
    publish.reset()
    audience.reset()
    assert not events.listening()  # the in-memory layer, and no hub runs in this process
    socket, _ = await connected(staff_cookie)
    assert events.listening()
    # The runner skipped events while nobody watched: the next one shows the gap.
    assert publish.updates_messages("check.status", change("a", "down"))[0]["n"] > 1
    await socket.disconnect()


def test_an_audience_on_redis_is_read_from_the_registry_rows(settings, redis_url, transactional_db):
    from django.utils import timezone

    from project.config import channel_layers
    from realtime.models import ConnectedClient

    settings.CHANNEL_LAYERS = channel_layers(redis_url, "pubsub")
    audience.reset()
    assert audience.watched()  # unknown until read: publish

    def answer_after_read() -> bool:
        audience.reset()
        audience.watched()  # starts a read
        for _ in range(500):  # bounded: 5 s
            if not audience._reading:
                break
            time.sleep(0.01)
        return audience.watched()

    assert answer_after_read() is False
    now = timezone.now()
    ConnectedClient.objects.create(
        client_id="x", server="s", user="u", connected_at=now, seen_at=now
    )
    assert answer_after_read() is True


def test_an_entry_carries_its_check_id_and_one_from_an_older_publisher_still_reads():
    new = result_entry({"check": {"id": 7, "name": "api", "tags": ["web"]}})
    assert Entry.from_wire(new.wire()) == new and new.check == 7
    old = Entry.from_wire(["api", ["web"], "{}"])  # three items: a publisher not yet upgraded
    assert (old.check, old.tags) == (None, frozenset({"web"}))
