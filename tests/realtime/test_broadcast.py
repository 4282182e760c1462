import asyncio
import json
import logging

import pytest
from channels.exceptions import StopConsumer
from websockets.exceptions import ConnectionClosedError

from realtime.broadcast import is_permanent, notify_clients, run_sender
from realtime.client import Client, ClientGone
from realtime.limits import Limits
from realtime.outbox import OutboxFull
from realtime.protocol import CLOSE_RESYNC, SCHEMA_VERSION, Watch, encode_event
from realtime.transport import SocketClosed
from tests.realtime.helpers import FAST, HANG, Socket, make_client, wait_until

pytestmark = pytest.mark.usefixtures("clean_hub")

BODY = encode_event("check.status", {"name": "db", "from": "up", "to": "down"})


async def deliver_one(socket: Socket):
    """One frame through a client's sender; returns the client once the sender is done
    with it (delivered, or the client closed)."""
    client = make_client(socket)
    client.start(run_sender(client, FAST))
    await notify_clients([client], "check.status", BODY)
    await wait_until(lambda: client.closed or client.delivered == 2)  # snapshot + event
    return client


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(),
        BrokenPipeError(),
        ConnectionError("gone"),
        # What Client.send makes of the RuntimeError an ASGI server raises after the close.
        ClientGone("Unexpected ASGI message 'websocket.send' after 'websocket.close'"),
        ConnectionClosedError(None, None),
        StopConsumer(),
    ],
)
# errors.classify reads ``.reason`` on every exception, which websockets deprecates.
@pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated")
def test_it_calls_a_closed_connection_permanent(error):
    assert is_permanent(error)


@pytest.mark.parametrize("error", [TimeoutError(), OutboxFull(), ValueError("odd"), OSError()])
def test_it_calls_other_failures_transient(error):
    assert not is_permanent(error)


async def test_it_drops_a_gone_client_at_once_without_retry():
    socket = Socket(ConnectionResetError())
    client = await deliver_one(socket)
    assert socket.closed[0] == CLOSE_RESYNC
    assert client.retries == 0
    assert socket.frames == []


async def test_a_runtime_error_is_permanent_too():
    socket = Socket(RuntimeError("closed"))
    client = await deliver_one(socket)
    assert client.closed and client.retries == 0


@pytest.mark.parametrize("failure", [HANG, ValueError("odd")])
async def test_it_retries_a_transient_failure_once_and_delivers(failure):
    socket = Socket(failure)
    client = await deliver_one(socket)
    assert not client.closed
    assert client.retries == 1
    assert [f["type"] for f in socket.frames] == ["check.status"]


async def test_a_failed_retry_closes_with_the_resync_code():
    socket = Socket(HANG, HANG)
    client = await deliver_one(socket)
    assert socket.closed == (CLOSE_RESYNC, "delivery failed: resync")
    assert client.retries == 1
    assert socket.frames == []


async def test_nothing_goes_out_before_the_first_snapshot():
    socket = Socket()
    client = Client("staff", socket.send, socket.close, Limits())
    client.start(run_sender(client, FAST))
    await notify_clients([client], "check.status", BODY)
    for _ in range(10):  # ample loop turns for a sender that would send
        await asyncio.sleep(0)
    assert client.delivered == 0
    client.outbox.release(encode_event("snapshot", {}))
    await wait_until(lambda: client.delivered == 2)
    assert [f["seq"] for f in socket.frames] == [2]  # the event follows the snapshot


async def test_frames_carry_increasing_sequence_numbers():
    socket = Socket()
    client = make_client(socket)
    client.start(run_sender(client, FAST))
    for _ in range(3):
        await notify_clients([client], "check.status", BODY)
    await wait_until(lambda: len(socket.frames) == 3)
    assert [f["seq"] for f in socket.frames] == [2, 3, 4]  # 1 was the snapshot
    assert {f["v"] for f in socket.frames} == {SCHEMA_VERSION}


async def test_a_stuck_client_does_not_delay_the_others():
    stuck, healthy = Socket(HANG, HANG), [Socket() for _ in range(3)]
    clients = [make_client(s) for s in (stuck, *healthy)]
    for client in clients:
        client.start(run_sender(client, FAST))
    for _ in range(5):
        report = await notify_clients(clients, "check.status", BODY)
        assert report.delivered == 4
    # Every healthy client has every event while the stuck one is still on its first send.
    await wait_until(lambda: all(len(s.frames) == 5 for s in healthy))
    assert stuck.closed is None
    await wait_until(lambda: stuck.closed is not None)
    assert stuck.closed[0] == CLOSE_RESYNC


async def test_a_client_over_its_outbox_gets_one_retry_then_is_dropped():
    socket = Socket()
    client = make_client(socket, outbox_capacity=3)  # no sender: nothing drains the outbox
    reports = [await notify_clients([client], "e", BODY, delivery=FAST) for _ in range(3)]
    # The snapshot, then two events fill it; the third is late.
    assert [(r.delivered, r.retried) for r in reports] == [(1, 0), (1, 0), (0, 1)]
    await wait_until(lambda: client.closed)
    assert socket.closed[0] == CLOSE_RESYNC
    assert client.retries == 1


async def test_a_client_that_catches_up_in_time_is_kept():
    socket = Socket()
    client = make_client(socket, outbox_capacity=3)
    for _ in range(3):
        await notify_clients([client], "e", BODY, delivery=FAST)
    client.start(run_sender(client, FAST))
    await wait_until(lambda: len(socket.frames) == 3)
    await asyncio.sleep(FAST.timeouts[1] + FAST.policy.base_delay)  # past the retry's deadline
    assert not client.closed


async def test_at_twice_the_outbox_capacity_a_client_is_dropped_at_once():
    socket = Socket()
    client = make_client(socket, outbox_capacity=1)
    reports = [await notify_clients([client], "e", BODY, delivery=FAST) for _ in range(3)]
    assert reports[-1].dropped == 1
    assert client.closed


async def test_it_skips_clients_whose_filter_does_not_match():
    wanted, other = make_client(Socket()), make_client(Socket())
    other.watch = Watch(tags=frozenset({"web"}))
    report = await notify_clients([wanted, other], "e", BODY, frozenset({"db"}))
    assert (report.delivered, report.filtered) == (1, 1)


async def test_a_check_page_gets_its_check_and_layer_status_only():
    page = make_client(Socket())
    page.watch = Watch(check=7)
    assert (await notify_clients([page], "e", BODY, frozenset(), check=7)).delivered == 1
    assert (await notify_clients([page], "e", BODY, frozenset(), check=8)).filtered == 1
    assert (await notify_clients([page], "clients", BODY)).filtered == 1
    assert (await notify_clients([page], "layer.status", BODY)).delivered == 1


async def test_it_logs_one_line_per_broadcast(caplog):
    clients = [make_client(Socket()) for _ in range(3)]
    with caplog.at_level(logging.DEBUG, logger="realtime.broadcast"):
        await notify_clients(clients, "check.status", BODY)
        clients[0].shutdown("gone")
        await notify_clients(clients, "check.status", BODY)
    lines = [r for r in caplog.records if r.name == "realtime.broadcast"]
    assert [r.levelno for r in lines] == [logging.DEBUG, logging.INFO]
    assert "clients=3 delivered=3 retried=0 dropped=0" in lines[0].getMessage()
    assert "clients=3 delivered=2 retried=0 dropped=1" in lines[1].getMessage()


async def test_a_client_behind_its_acks_is_told_to_resync():
    socket = Socket()
    client = make_client(socket, max_unacked=3, ack_grace=0)
    client.start(run_sender(client, FAST))
    for _ in range(4):
        await notify_clients([client], "e", BODY)
    await wait_until(lambda: client.closed)
    assert socket.closed == (CLOSE_RESYNC, "more than 3 frames not acknowledged")


# --- frames written straight to the socket (daphne's WRITER) -------------------------------------


class Direct:
    """A frame writer as daphne gives one (``transport.WRITER``): records each frame's parts.

    ``outcomes`` are used one per event frame: an exception is raised, ``False`` declines (no
    room). The snapshot is written but not recorded, as ``Socket`` does.
    """

    def __init__(self, *outcomes: BaseException | bool) -> None:
        self.parts: list[tuple[bytes, ...]] = []
        self._outcomes = list(outcomes)

    def __call__(self, parts, limit: int) -> bool:
        if b'"type":"snapshot"' in parts[-1]:
            return True
        if self._outcomes:
            outcome = self._outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        self.parts.append(tuple(parts))
        return True

    @property
    def frames(self) -> list[dict]:
        return [json.loads(b"".join(parts)) for parts in self.parts]


def direct_client(socket: Socket, direct: Direct) -> Client:
    client = Client("staff", socket.send, socket.close, Limits(), write=direct)
    client.outbox.release(encode_event("snapshot", {}))
    client.start(run_sender(client, FAST))
    return client


async def test_frames_go_straight_to_the_socket_numbered_per_connection_on_one_shared_body():
    pairs = [(Socket(), Direct()) for _ in range(2)]
    clients = [direct_client(socket, direct) for socket, direct in pairs]
    for _ in range(3):
        await notify_clients(clients, "check.status", BODY)
    await wait_until(lambda: all(len(direct.parts) == 3 for _, direct in pairs))
    for socket, direct in pairs:
        assert [f["seq"] for f in direct.frames] == [2, 3, 4]  # gap-free, 1 was the snapshot
        assert {f["v"] for f in direct.frames} == {SCHEMA_VERSION}
        assert direct.frames[0]["data"] == {"name": "db", "from": "up", "to": "down"}
        assert socket.frames == []  # nothing through the ASGI send
    # Only the few bytes of the sequence number are each client's own: the body is one object.
    (_, first), (_, second) = pairs
    assert first.parts[0][-1] is second.parts[0][-1]
    assert len(first.parts[0][0]) < 20


async def test_a_frame_the_socket_has_no_room_for_goes_through_send_with_its_number():
    socket, direct = Socket(), Direct(False)
    client = direct_client(socket, direct)
    for _ in range(2):
        await notify_clients([client], "check.status", BODY)
    await wait_until(lambda: client.delivered == 3)
    assert [f["seq"] for f in socket.frames] == [2]
    assert [f["seq"] for f in direct.frames] == [3]
    assert client.retries == 0


@pytest.mark.parametrize("failure", [OSError("odd"), ValueError("odd")])
async def test_a_failed_first_write_is_retried_once_through_send(failure):
    socket, direct = Socket(), Direct(failure)
    client = direct_client(socket, direct)
    await notify_clients([client], "check.status", BODY)
    await wait_until(lambda: client.delivered == 2)
    assert client.retries == 1 and not client.closed
    assert [f["seq"] for f in socket.frames] == [2]  # the same frame, once


async def test_a_failed_first_write_whose_retry_fails_too_resyncs_the_client():
    socket, direct = Socket(HANG), Direct(OSError("odd"))
    client = direct_client(socket, direct)
    await notify_clients([client], "check.status", BODY)
    await wait_until(lambda: client.closed)
    assert socket.closed == (CLOSE_RESYNC, "delivery failed: resync")
    assert client.retries == 1


async def test_a_write_to_a_gone_socket_drops_it_at_once_while_the_others_receive():
    gone = (Socket(), Direct(SocketClosed("closed")))
    healthy = [(Socket(), Direct()) for _ in range(2)]
    clients = [direct_client(socket, direct) for socket, direct in (gone, *healthy)]
    await notify_clients(clients, "check.status", BODY)
    await wait_until(lambda: clients[0].closed)
    await wait_until(lambda: all(len(direct.parts) == 1 for _, direct in healthy))
    assert gone[0].closed == (CLOSE_RESYNC, "connection gone")
    assert clients[0].retries == 0 and gone[0].frames == [] and gone[1].parts == []


async def test_a_client_whose_write_fails_and_hangs_does_not_delay_the_others():
    stuck = (Socket(HANG, HANG), Direct(OSError("odd")))
    healthy = [(Socket(), Direct()) for _ in range(3)]
    clients = [direct_client(socket, direct) for socket, direct in (stuck, *healthy)]
    for _ in range(5):
        await notify_clients(clients, "check.status", BODY)
    await wait_until(lambda: all(len(direct.parts) == 5 for _, direct in healthy))
    assert not clients[0].closed  # still on its retry of the first frame
    await wait_until(lambda: clients[0].closed)
    assert stuck[0].closed == (CLOSE_RESYNC, "delivery failed: resync")
