"""The dashboard listens to what the checks app announces (``connections_app.events``)."""

from django.dispatch import receiver

from connections_app.events import checks_changed, subscribe
from realtime.audience import watched
from realtime.publish import publish_event, request_resync_sync

# Every event the runner announces goes to every dashboard, while one watches.
subscribe(publish_event, audience=watched)


@receiver(checks_changed, dispatch_uid="realtime.checks_changed")
def resync_dashboards(sender, **kwargs) -> None:
    # Sent after the commit already: every dashboard rebuilds from what is stored.
    request_resync_sync()
