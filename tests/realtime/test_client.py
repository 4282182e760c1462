import pytest

from realtime.protocol import Watch
from tests.realtime.helpers import Socket, make_client


def test_an_ack_beyond_the_last_frame_is_refused():
    client = make_client(Socket())
    client.next_seq()
    assert not client.ack(2)
    assert client.ack(1)
    assert client.acked == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("realtime.client.time.monotonic", clock)
    return clock


def test_it_lags_when_too_many_frames_are_not_acknowledged(clock):
    client = make_client(Socket(), max_unacked=3, ack_grace=2)
    for _ in range(4):
        client.next_seq()
    assert client.lag() is None  # a burst: no ack could be back yet
    clock.now += 2
    client.next_seq()
    assert "more than 3 frames" in client.lag()
    client.ack(5)
    assert client.lag() is None


def test_it_lags_when_frames_keep_coming_without_an_ack_for_too_long(clock):
    client = make_client(Socket(), max_ack_delay=45, ack_grace=2)
    client.next_seq()
    clock.now += 44
    client.next_seq()
    assert client.lag() is None
    clock.now += 2
    client.next_seq()
    assert client.lag() is None  # the frame at 44 s could not be acked yet: not judged
    clock.now += 2
    client.next_seq()
    assert "no ack for 45 s" in client.lag()


def test_a_burst_tail_then_a_quiet_minute_is_not_lag(clock):
    # The page acks as frames arrive: the last frames of a burst stay unacked until the next
    # one comes, which may be a minute later. Sending that frame must not close the client.
    client = make_client(Socket(), max_ack_delay=45, ack_grace=2)
    client.next_seq()
    clock.now += 60
    client.next_seq()
    assert client.lag() is None


def test_a_quiet_stream_does_not_make_a_batching_client_lag(clock):
    client = make_client(Socket(), max_ack_delay=45)
    client.next_seq()
    clock.now += 3600  # nothing sent for an hour: the last frame is not acked yet, and fine
    assert client.lag() is None


def test_bad_frames_count_within_a_sliding_window():
    client = make_client(Socket(), bad_frames_allowed=3, bad_frame_window=60)
    assert not client.bad_frame(now=0)
    assert not client.bad_frame(now=10)
    assert not client.bad_frame(now=100)  # the first two are out of the window now
    assert not client.bad_frame(now=101)
    assert client.bad_frame(now=102)


def test_a_filter_passes_matching_and_untagged_events():
    client = make_client(Socket())
    assert client.wants(1, frozenset({"web"}))
    client.watch = Watch(tags=frozenset({"db"}))
    assert client.wants(1, frozenset({"db", "web"}))
    assert client.wants(None, None, "clients")
    assert not client.wants(1, frozenset({"web"}))


def test_a_check_s_page_wants_that_check_and_the_layer_status_only():
    client = make_client(Socket())
    client.watch = Watch(check=1)
    assert client.wants(1, frozenset({"web"}))
    assert not client.wants(2, frozenset({"web"}))
    assert client.wants(None, None, "layer.status")
    assert not client.wants(None, None, "errors.updated")
