"""Who may watch the dashboard: judged when a socket opens, and again at every heartbeat.

A socket outlives the request that opened it: logging out, being deactivated or demoted,
losing ``view_healthcheck`` or changing one's password must end it too. The hub's heartbeat
(``realtime.hub``) reads each open socket's session again, as Django would for the next request
(``recheck``), and closes the sockets whose session no longer stands for a user who may watch:
4401 when there is no such user any more (logged out, session expired, deactivated, password
changed: the session's auth hash no longer matches), 4403 when the user stays but may not watch.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.utils.crypto import constant_time_compare

from connections_app.models import HealthCheck
from connections_app.permissions import may_watch
from realtime.client import Client
from realtime.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    EVERY,
    Watch,
)

REASONS = {
    CLOSE_UNAUTHENTICATED: "session ended: log in again",
    CLOSE_FORBIDDEN: "not allowed to view checks",
    CLOSE_NOT_FOUND: "no such check",
}


def refusal(user, watch: Watch = EVERY) -> int | None:
    """The close code for a user who may not watch (``permissions.may_watch``, as the
    dashboard's and a check's pages ask), or for a check's page whose check does not exist;
    None when the connection may go on. Reads the database: call it from a thread."""
    if user is None or not user.is_authenticated:
        return CLOSE_UNAUTHENTICATED
    if not may_watch(user):
        return CLOSE_FORBIDDEN
    if watch.check is not None and not HealthCheck.objects.filter(pk=watch.check).exists():
        return CLOSE_NOT_FOUND
    return None


def session_user(session_key: str | None):
    """The user ``session_key`` is logged in as now, or None: no session (logged out, expired),
    a user the backend no longer gives (deleted, inactive), or a session auth hash that no
    longer matches (the password changed). Django's own ``get_user`` without its side effects:
    it would flush or re-key the session, which a socket cannot tell the browser about."""
    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not _hash_matches(session.get(HASH_SESSION_KEY), user):
        return None
    return user


def _hash_matches(session_hash: str | None, user) -> bool:
    if not hasattr(user, "get_session_auth_hash"):
        return True  # a backend whose users have no password hash: nothing to compare
    if not session_hash:
        return False
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(session_hash, known) for known in hashes)


def recheck(clients: Iterable[Client]) -> list[tuple[Client, int]]:
    """The clients that may no longer watch, each with its close code. One session read and
    one user read per distinct session (a browser's tabs share theirs). Runs in a thread."""
    verdicts: dict[str | None, int | None] = {}
    refused = []
    for client in clients:
        key = client.session_key
        if key not in verdicts:
            verdicts[key] = refusal(session_user(key))
        if verdicts[key] is not None:
            refused.append((client, verdicts[key]))
    return refused
