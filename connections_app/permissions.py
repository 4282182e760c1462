"""Who may do what: the permissions the admin's actions, the dashboard and its socket ask for.

Django's model permissions are the one source: a superuser has them all, other staff what their
groups and user permissions grant. Viewing checks (the dashboard, its socket, the admin's lists)
needs ``view_healthcheck``; pausing and resuming ``change_healthcheck``; "run now", which makes
the server connect out at once, its own ``run_healthcheck`` (``HealthCheck.Meta.permissions``).
"""

from __future__ import annotations

VIEW_CHECKS = "connections_app.view_healthcheck"
CHANGE_CHECKS = "connections_app.change_healthcheck"
RUN_CHECKS = "connections_app.run_healthcheck"


def may_watch(user) -> bool:
    """Whether ``user`` may see the checks' live state: active staff with ``view_healthcheck``."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(VIEW_CHECKS)
    )
