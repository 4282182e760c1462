"""Each check keeps its newest results on its row for the dashboard's sparkline
(``recent_points``); filled from the results already stored, so no sparkline starts empty."""

from django.db import migrations, models


def fill(apps, schema_editor):
    from connections_app.recent_points import fill

    fill(
        apps.get_model("connections_app", "HealthCheck"),
        apps.get_model("connections_app", "CheckResult"),
        using=schema_editor.connection.alias,
    )


class Migration(migrations.Migration):
    dependencies = [("connections_app", "0020_results_list_indexes")]

    operations = [
        migrations.AddField(
            model_name="healthcheck",
            name="recent",
            field=models.TextField(default="[]", editable=False),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
