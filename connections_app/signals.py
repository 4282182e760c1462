"""Checks added, edited or deleted anywhere (admin, import, the monitor API) are announced."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from connections_app.events import announce_checks_changed
from connections_app.models import HealthCheck


@receiver(post_save, sender=HealthCheck, dispatch_uid="connections_app.check_saved")
@receiver(post_delete, sender=HealthCheck, dispatch_uid="connections_app.check_deleted")
def check_saved_or_deleted(sender, **kwargs) -> None:
    announce_checks_changed()
