"""The dashboard listens to what the checks app announces (``connections_app.events``)."""

from django.dispatch import receiver

from connections_app.events import check_event, checks_changed
from realtime.publish import publish_event, request_resync_sync


@receiver(check_event, dispatch_uid="realtime.check_event")
async def publish_check_event(sender, event: str, data: dict, **kwargs) -> None:
    await publish_event(event, data)


@receiver(checks_changed, dispatch_uid="realtime.checks_changed")
def resync_dashboards(sender, **kwargs) -> None:
    # Sent after the commit already: every dashboard rebuilds from what is stored.
    request_resync_sync()
