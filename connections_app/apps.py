from django.apps import AppConfig


class ConnectionsAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "connections_app"
    verbose_name = "Connection health"
