"""ASGI entry point: HTTP to Django, WebSocket through origin check and auth to realtime."""

import gc
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.core.exceptions import ImproperlyConfigured

try:
    from django.core.asgi import get_asgi_application

    # Static files are served by WhiteNoise, a middleware (settings.MIDDLEWARE): it serves only
    # the files it indexed, so a path that climbs out (/static/../x) is a plain 404.
    django_asgi_app = get_asgi_application()
except ImproperlyConfigured as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    sys.exit(3)

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter

from connections_app import access_log
from connections_app.probe_slots import raise_nofile_limit
from realtime.origin import SameOriginValidator
from realtime.routing import websocket_urlpatterns
from realtime.session_guard import SessionGuard
from realtime.transport import WriteBufferMiddleware

# daphne's access lines through our logging (redaction, rotation), not straight to stdout.
access_log.install()

# Before any server listens (the daphne command and serve import this module first): systemd's
# default soft limit of 1,024 descriptors lets about 1,000 idle connections lock out /health/
# and the admin while the hard limit allows far more. Harmless under any ASGI server.
raise_nofile_limit()

# Under the daphne command, the idle timeout serve has (connections_app/daphne_server.py). Only
# then: importing daphne.server installs Twisted's reactor, of no use to another ASGI server.
if (daphne_cli := sys.modules.get("daphne.cli")) is not None:
    from connections_app.daphne_server import install_in_daphne_command

    install_in_daphne_command(daphne_cli)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Outermost: the write buffer's reader needs daphne's own send (realtime/transport.py).
        "websocket": WriteBufferMiddleware(
            SameOriginValidator(SessionGuard(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))))
        ),
    }
)

# Everything loaded so far (Django, the apps, their modules) lives as long as the process. A
# full garbage collection scanned it all: about 50 ms with the event loop stopped, a stall of
# every WebSocket frame in flight (docs/BENCHMARKS.md, "Live dashboard"). Frozen objects are
# left out of every collection.
gc.freeze()
