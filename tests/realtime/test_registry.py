import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from realtime.models import ConnectedClient
from realtime.registry import ClientRegistry, clients_elsewhere, sync_rows
from tests.conftest import REPO
from tests.realtime.helpers import Socket, make_client

pytestmark = pytest.mark.django_db


def test_the_heartbeat_writes_this_servers_clients_and_forgets_the_rest():
    a, b = make_client(Socket()), make_client(Socket())
    sync_rows("host:1", [a, b], expiry=30)
    assert set(ConnectedClient.objects.values_list("client_id", flat=True)) == {a.id, b.id}
    a.delivered, a.retries = 7, 1
    sync_rows("host:1", [a], expiry=30)
    row = ConnectedClient.objects.get()
    assert (row.client_id, row.delivered, row.retries, row.server) == (a.id, 7, 1, "host:1")


def test_a_row_swept_while_its_server_was_paused_comes_back_at_the_next_heartbeat():
    # Another server expires rows whose heartbeat is late (a long GC pause, a stopped VM).
    a, b = make_client(Socket()), make_client(Socket())
    sync_rows("host:1", [a, b], expiry=30)
    ConnectedClient.objects.filter(client_id=a.id).delete()
    a.delivered = 3
    sync_rows("host:1", [a, b], expiry=30)
    rows = dict(ConnectedClient.objects.values_list("client_id", "delivered"))
    assert rows == {a.id: 3, b.id: 0}


def test_rows_of_a_server_that_stopped_writing_expire():
    dead = make_client(Socket())
    sync_rows("dead:1", [dead], expiry=30)
    ConnectedClient.objects.update(seen_at=timezone.now() - timedelta(seconds=31))
    assert clients_elsewhere("host:1", expiry=30) == 0
    sync_rows("host:1", [make_client(Socket())], expiry=30)
    assert not ConnectedClient.objects.filter(server="dead:1").exists()


def test_clients_elsewhere_counts_only_other_live_servers():
    sync_rows("other:2", [make_client(Socket()) for _ in range(3)], expiry=30)
    sync_rows("host:1", [make_client(Socket())], expiry=30)
    assert clients_elsewhere("host:1", expiry=30) == 3


def test_staff_see_live_clients_read_only_in_the_admin(admin_client):
    live, dead = make_client(Socket()), make_client(Socket())
    sync_rows("dead:1", [dead], expiry=30)
    ConnectedClient.objects.update(seen_at=timezone.now() - timedelta(minutes=5))
    sync_rows("live:1", [live], expiry=3600)
    page = admin_client.get("/admin/realtime/connectedclient/")
    assert page.status_code == 200
    assert b"live:1" in page.content and b"dead:1" not in page.content
    assert admin_client.get("/admin/realtime/connectedclient/add/").status_code == 403


async def test_a_client_leaves_the_registry_when_it_shuts_down():
    registry = ClientRegistry()
    a, b = make_client(Socket()), make_client(Socket())
    registry.add(a)
    registry.add(b)
    assert a.shutdown("disconnected")
    assert registry.clients() == [b]
    b.shutdown("disconnected")
    registry.add(b)  # too late: a client that shut down is never registered again
    assert len(registry) == 0


def test_the_client_module_does_not_import_the_registry():
    # The registry knows clients, not the other way round: no import circle.
    code = "import realtime.client, sys; print('realtime.registry' in sys.modules)"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert run.stdout.strip() == "False", run.stderr
