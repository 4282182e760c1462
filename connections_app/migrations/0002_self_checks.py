"""The two self-checks every installation starts with: its own database and channel layer.

Created once, by this migration: a user who deletes them does not get them back. They are
critical (set here, not by the field default, which is off since 0007): without its own
database or channel layer this app cannot do its job.
"""

from django.db import migrations

SELF_CHECKS = [
    {"name": "self: database", "kind": "database", "target": "default", "tags": "self",
     "critical": True},
    {"name": "self: channel layer", "kind": "channel_layer", "target": "default", "tags": "self",
     "critical": True},
]


def create(apps, schema_editor):
    HealthCheck = apps.get_model("connections_app", "HealthCheck")
    for fields in SELF_CHECKS:
        HealthCheck.objects.get_or_create(
            name=fields["name"], defaults={**fields, "interval": 30.0, "timeout": 5.0}
        )


def remove(apps, schema_editor):
    HealthCheck = apps.get_model("connections_app", "HealthCheck")
    HealthCheck.objects.filter(name__in=[c["name"] for c in SELF_CHECKS]).delete()


class Migration(migrations.Migration):
    dependencies = [("connections_app", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
