"""The dashboard's limits in one place; ``settings.DASHBOARD_LIMITS`` overrides any of them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.conf import settings


@dataclass(frozen=True)
class Limits:
    #: A client frame larger than this (UTF-8 bytes) is answered with an error frame.
    max_frame_bytes: int = 64 * 1024
    #: This many bad frames within ``bad_frame_window`` seconds close the socket with 4008.
    bad_frames_allowed: int = 5
    bad_frame_window: float = 60.0
    #: Frames waiting for one socket. Past it a client gets one retry to catch up; at twice
    #: this it is dropped. Bounds server memory per client together with the ack limits. An
    #: entry is a reference to the event's one shared body, so a large capacity is cheap, and
    #: a burst (the runner writes results in batches of 200) must fit.
    outbox_capacity: int = 1000
    #: Bytes daphne may hold unsent for one socket before its next frame waits (the sender's
    #: timeouts then drop a client that does not read): acks alone do not bound memory, a
    #: client can ack what it never read (realtime/transport.py).
    max_buffered_bytes: int = 256 * 1024
    #: A client this many frames or this many seconds behind its acks is told to resync.
    max_unacked: int = 200
    max_ack_delay: float = 45.0
    #: Frames younger than this do not count towards ``max_unacked``: in a burst (a batch of
    #: results published back to back) no ack can come back before 200 frames went out.
    ack_grace: float = 2.0
    #: Seconds between heartbeats: registry rows and error counts written, group membership
    #: renewed (lagging clients are judged after each frame, not here). Registry rows older
    #: than ``registry_expiry`` belong to a dead server.
    heartbeat: float = 10.0
    registry_expiry: float = 30.0
    #: Snapshot contents.
    sparkline_points: int = 30
    #: The snapshot frame holds the counts and at most this many checks, worst first; the
    #: rest follow in ``snapshot.part`` frames. Each of them stays under ``snapshot_frame_bytes``
    #: (daphne refuses messages over 1 MiB: a whole snapshot passed that at about 350 checks).
    snapshot_first_checks: int = 100
    snapshot_frame_bytes: int = 256 * 1024
    #: Results and status changes go out as one ``updates`` frame per client, ``flush_gather``
    #: seconds after the first of them arrived, and at least ``flush_interval`` seconds after
    #: the previous frame. A runner flushes a little more than a second apart: with a gap of
    #: exactly 1 s the frames locked onto a late phase (measured: 0.45 s after every announce
    #: instead of 0.05 s); 0.9 s lets each follow its runner flush, still about one a second.
    flush_interval: float = 0.9
    flush_gather: float = 0.05
    #: An ``updates`` frame over this many bytes is cut into several (sent in the same flush).
    updates_frame_bytes: int = 256 * 1024
    #: Entries waiting for the next flush; beyond, they are dropped and every client resyncs.
    max_pending: int = 50_000
    error_stats: int = 20
    #: Client filters: at most this many tags, each at most ``max_tag_length`` characters.
    max_tags: int = 20
    max_tag_length: int = 50
    #: A client may ask for a fresh snapshot (filter, resync) at most once per this many seconds.
    snapshot_min_interval: float = 1.0
    #: The page pings every 20 s; a client pinging more often than this gets an error frame,
    #: which counts as a bad frame, instead of a pong.
    ping_min_interval: float = 1.0


def limits() -> Limits:
    return replace(Limits(), **getattr(settings, "DASHBOARD_LIMITS", {}))
