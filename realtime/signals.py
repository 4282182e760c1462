"""Checks added, edited or deleted (admin, import): every dashboard gets a fresh snapshot."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from connections_app.models import HealthCheck
from realtime.publish import request_resync_sync


@receiver(post_save, sender=HealthCheck, dispatch_uid="realtime.check_saved")
@receiver(post_delete, sender=HealthCheck, dispatch_uid="realtime.check_deleted")
def checks_changed(sender, **kwargs) -> None:
    # After the commit: a snapshot must never be built from a change that may roll back.
    transaction.on_commit(request_resync_sync)
