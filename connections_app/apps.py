from django.apps import AppConfig


class ConnectionsAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "connections_app"
    verbose_name = "Connection health"

    def ready(self) -> None:
        from connections_app import signals  # noqa: F401 - connects the receivers
