"""Who may watch: the dashboard page and its socket need ``view_healthcheck``, and an open socket
is closed within one heartbeat of its session ending or its user losing the right to watch.

Through the real ASGI stack in memory; the heartbeat is made short (``DASHBOARD_LIMITS``) and
each test waits for the close frame itself, bounded by ``TIMEOUT``.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client as HttpClient

from realtime.registry import registry
from tests.realtime.conftest import TIMEOUT, communicator, connected, receive_type, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_hub")]

#: Frames a socket may receive before its close (snapshots, header pushes each heartbeat).
MAX_OUTPUTS = 200


async def close_code(socket) -> int:
    """The code of the socket's close frame, skipping the frames before it."""
    for _ in range(MAX_OUTPUTS):
        output = await socket.receive_output(timeout=TIMEOUT)
        if output["type"] == "websocket.close":
            return output["code"]
    raise AssertionError(f"no close among {MAX_OUTPUTS} frames")


def browser(username: str, *codenames: str, staff: bool = True) -> HttpClient:
    user = get_user_model().objects.create_user(username, is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = HttpClient()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("codenames", "staff", "status"),
    [
        (("view_healthcheck",), True, 200),
        ((), True, 403),
        (("change_healthcheck", "view_alert"), True, 403),
        (("view_healthcheck",), False, 302),  # not staff: to the admin's login
    ],
)
def test_the_dashboard_page_needs_the_view_permission(codenames, staff, status):
    assert browser("someone", *codenames, staff=staff).get("/dashboard/").status_code == status


def test_superusers_get_the_dashboard(admin_client):
    assert admin_client.get("/dashboard/").status_code == 200


async def test_staff_without_the_view_permission_are_closed_with_4403():
    cookie = await sync_to_async(session_cookie)("nobody", True, "view_alert")
    socket = communicator(cookie)
    ok, _ = await socket.connect(timeout=TIMEOUT)
    assert ok  # accepted only to say why
    assert await close_code(socket) == 4403
    assert len(registry) == 0


async def test_a_superuser_without_explicit_permissions_may_watch():
    def superuser_cookie() -> str:
        user = get_user_model().objects.create_superuser("root", "r@x.io", "pw")
        client = HttpClient()
        client.force_login(user)
        return client.cookies["sessionid"].value

    socket, first = await connected(await sync_to_async(superuser_cookie)())
    assert first["type"] == "snapshot"
    await socket.disconnect()


def logout(cookie: str) -> None:
    client = HttpClient()
    client.cookies["sessionid"] = cookie
    assert client.post("/admin/logout/").status_code == 200


def update_user(**fields):
    def change(cookie: str) -> None:
        get_user_model().objects.filter(username="victim").update(**fields)

    return change


def remove_permission(cookie: str) -> None:
    user = get_user_model().objects.get(username="victim")
    user.user_permissions.clear()


def change_password(cookie: str) -> None:
    user = get_user_model().objects.get(username="victim")
    user.set_password("a new password for the victim")
    user.save()


REVOKES = [
    (logout, 4401),
    (update_user(is_active=False), 4401),
    (change_password, 4401),
    (update_user(is_staff=False), 4403),
    (remove_permission, 4403),
]
REVOKED_BY = ["logout", "deactivated", "password changed", "demoted", "permission removed"]


@pytest.mark.parametrize(("revoke", "code"), REVOKES, ids=REVOKED_BY)
async def test_an_open_socket_is_closed_within_a_heartbeat(settings, revoke, code):
    settings.DASHBOARD_LIMITS = {"heartbeat": 0.05}
    victim_cookie = await sync_to_async(session_cookie)("victim")
    bystander_cookie = await sync_to_async(session_cookie)("bystander")
    victim, _ = await connected(victim_cookie)
    bystander, _ = await connected(bystander_cookie)

    await sync_to_async(revoke)(victim_cookie)

    assert await close_code(victim) == code
    # The heartbeat that judged the victim judged the bystander too: still served.
    await bystander.send_to(text_data='{"type": "ping"}')
    assert (await receive_type(bystander, "pong"))["type"] == "pong"
    assert len(registry) == 1
    await bystander.disconnect()


@pytest.mark.parametrize(("revoke", "code"), REVOKES, ids=REVOKED_BY)
def test_one_recheck_finds_each_revoked_session(revoke, code, django_assert_max_num_queries):
    """What one heartbeat does, without the event loop: the sockets of a revoked session get
    its code, the others nothing; two sockets of one session cost one session read."""
    from realtime.access import recheck
    from realtime.client import Client
    from realtime.limits import Limits

    def client(cookie: str) -> Client:
        return Client("u", send=None, close=None, limits=Limits(), session_key=cookie)

    victim_cookie, bystander_cookie = session_cookie("victim"), session_cookie("bystander")
    tabs = [client(victim_cookie), client(victim_cookie)]
    bystander = client(bystander_cookie)
    assert recheck([*tabs, bystander]) == []
    revoke(victim_cookie)
    # Per session, not per tab: the session, the user, its own and its groups' permissions.
    with django_assert_max_num_queries(2 * 4):
        assert recheck([*tabs, bystander]) == [(tabs[0], code), (tabs[1], code)]
