"""The cross-server client registry: one row per open dashboard, written by its server."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone


class ConnectedClientQuerySet(models.QuerySet):
    def live(self, expiry: float) -> ConnectedClientQuerySet:
        """Rows whose server wrote within ``expiry`` seconds: the others died."""
        return self.filter(seen_at__gte=timezone.now() - timedelta(seconds=expiry))


class ConnectedClient(models.Model):
    client_id = models.CharField(max_length=32, unique=True)
    server = models.CharField(max_length=200, help_text="host:pid of the server process")
    user = models.CharField(max_length=150)
    connected_at = models.DateTimeField()
    seen_at = models.DateTimeField(help_text="last heartbeat of its server")
    delivered = models.BigIntegerField(default=0, help_text="frames written to its socket")
    retries = models.BigIntegerField(default=0)

    objects = ConnectedClientQuerySet.as_manager()

    class Meta:
        ordering = ["-connected_at"]
        indexes = [
            # Heartbeat: "this server's rows" and "rows of dead servers".
            models.Index(fields=["server"], name="client_server_idx"),
            models.Index(fields=["seen_at"], name="client_seen_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.server}"
