"""Public status page: ``public``, ``public_name`` and a badge token per check.

The token is unique, so existing checks each get their own random one (a callable default in
``AddField`` would give every row the same value): added nullable, filled, then made required.
"""

import secrets

from django.db import migrations, models

import connections_app.models


def fill_badge_tokens(apps, schema_editor):
    HealthCheck = apps.get_model("connections_app", "HealthCheck")
    for check in HealthCheck.objects.filter(badge_token__isnull=True).only("pk"):
        HealthCheck.objects.filter(pk=check.pk).update(badge_token=secrets.token_urlsafe(24))


class Migration(migrations.Migration):

    dependencies = [
        ("connections_app", "0016_runner"),
    ]

    operations = [
        migrations.AddField(
            model_name="healthcheck",
            name="public",
            field=models.BooleanField(
                default=False,
                help_text="Shown on the public status page (/status/) and its badges: its public "
                "name, status, daily uptime and changes; never its target, tags or errors.",
            ),
        ),
        migrations.AddField(
            model_name="healthcheck",
            name="public_name",
            field=models.CharField(
                blank=True,
                help_text="The name the public sees; required for a public check (the name above "
                "is never shown there).",
                max_length=100,
            ),
        ),
        migrations.AddField(
            model_name="healthcheck",
            name="badge_token",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(fill_badge_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="healthcheck",
            name="badge_token",
            field=models.CharField(
                default=connections_app.models.new_badge_token,
                editable=False,
                max_length=64,
                unique=True,
            ),
        ),
    ]
