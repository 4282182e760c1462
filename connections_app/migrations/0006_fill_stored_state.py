"""Fill the stored state of every check from the results already stored: nothing is lost."""

from django.db import migrations


def fill(apps, schema_editor):
    from connections_app.state import rebuild_from_results

    rebuild_from_results(
        apps.get_model("connections_app", "HealthCheck"),
        apps.get_model("connections_app", "CheckResult"),
        using=schema_editor.connection.alias,
    )
    # A check without results keeps UNKNOWN, or shows PAUSED when it is disabled.
    checks = apps.get_model("connections_app", "HealthCheck").objects
    checks.using(schema_editor.connection.alias).filter(enabled=False).update(status="paused")


class Migration(migrations.Migration):
    dependencies = [("connections_app", "0005_stored_state")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
