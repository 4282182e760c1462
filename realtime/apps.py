from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "realtime"
    verbose_name = "Live dashboard"

    def ready(self) -> None:
        from connections_app.metrics import add_source
        from realtime import signals  # noqa: F401 - connects the receivers
        from realtime.metrics import dashboard_clients

        add_source(dashboard_clients)
