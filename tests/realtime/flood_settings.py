"""Settings for a daphne whose clients ack perfectly (test_write_buffer.py): the ack limits are
off, so only the transport's write buffer can bound what a client that never reads costs.
``MAX_BUFFERED_BYTES`` in the environment sets that bound (the test measures with and without)."""

import os

from tests.settings import *  # noqa: F403

DASHBOARD_LIMITS = {"max_unacked": 10**9, "max_ack_delay": 1e9}
if "MAX_BUFFERED_BYTES" in os.environ:
    DASHBOARD_LIMITS["max_buffered_bytes"] = int(os.environ["MAX_BUFFERED_BYTES"])
