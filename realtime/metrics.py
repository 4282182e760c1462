"""The dashboard's figure on ``/metrics``: open dashboards on every server process.

Read from the cross-server registry (``ConnectedClient`` rows each server writes on its
heartbeat), so any process serving the scrape counts every server's clients.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from connections_app.metrics import PREFIX
from realtime.limits import limits
from realtime.models import ConnectedClient


def dashboard_clients() -> Iterable[Metric]:
    clients = GaugeMetricFamily(
        f"{PREFIX}_dashboard_clients",
        "Open dashboards on every live server process, as of their last heartbeat.",
    )
    clients.add_metric([], ConnectedClient.objects.live(limits().registry_expiry).count())
    return [clients]
