"""daphne's server with Twisted's idle timeout, for ``manage.py serve`` and for the ``daphne``
command alike (``project/asgi.py`` installs it in the latter).

A connection that sends nothing for ``IDLE_TIMEOUT`` seconds while no request is in progress
(an incomplete request, or keep-alive between requests) is closed: idle half-open connections
("slow-loris") go before they use up the descriptors. Twisted's default is 60 s, and daphne
has no option for it: it builds its ``HTTPFactory`` inside ``Server.run()``, and every
connection copies the factory's ``timeOut`` when it is built. So the factory is caught as
``run()`` assigns it, before the first listen.
"""

from __future__ import annotations

# daphne.server installs Twisted's asyncio reactor on import: it must come before any other
# Twisted import.
import daphne.server  # isort:skip

from daphne.http_protocol import HTTPFactory
from django.conf import settings


class IdleTimeoutServer(daphne.server.Server):
    """daphne's ``Server``, whose HTTP factory closes idle connections after ``idle_timeout``
    seconds (None: ``settings.IDLE_TIMEOUT``)."""

    idle_timeout: int | None = None
    _http_factory: HTTPFactory | None = None

    @property
    def http_factory(self) -> HTTPFactory | None:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        factory.timeOut = self.idle_timeout or settings.IDLE_TIMEOUT
        self._http_factory = factory


def install_in_daphne_command(cli) -> bool:
    """Make the running ``daphne`` command (``cli``: the ``daphne.cli`` module) build an
    ``IdleTimeoutServer``; False when it was given a server class of its own.

    The hook is daphne's own ``CommandLineInterface.server_class``: its ``run()`` imports the
    application (this project's asgi module, which calls this) and only then instantiates
    ``self.server_class``, so setting the class attribute here takes effect for this run.
    """
    if cli.CommandLineInterface.server_class is not daphne.server.Server:
        return False
    cli.CommandLineInterface.server_class = IdleTimeoutServer
    return True
