"""Checks added, edited or deleted anywhere (admin, import, the monitor API) are announced, and a
check switched on or off by a form is paused or resumed like by the admin's actions."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from connections_app.events import announce_checks_changed
from connections_app.models import HealthCheck
from connections_app.state import switch


@receiver(post_save, sender=HealthCheck, dispatch_uid="connections_app.check_saved")
def check_saved(sender, instance: HealthCheck, created: bool, **kwargs) -> None:
    if not created:
        # Judged from the locked row, not from the status the form loaded (a minute old):
        # a switch the row already agrees with writes nothing.
        switch([instance.pk], instance.enabled)
    announce_checks_changed()


@receiver(post_delete, sender=HealthCheck, dispatch_uid="connections_app.check_deleted")
def check_deleted(sender, **kwargs) -> None:
    announce_checks_changed()
