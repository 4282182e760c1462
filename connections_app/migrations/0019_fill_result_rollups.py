"""Build the hourly and daily rollups from the results already stored, in SQL: one
``INSERT ... SELECT ... GROUP BY`` per period, no raw row through Python.

It uses ``rollups.rebuild`` with this migration's historical models: the bucket bounds it
counts by are fixed forever (stored counts depend on them), so the code it calls cannot drift
from what the schema here holds.
"""

from django.db import migrations


def fill(apps, schema_editor):
    from connections_app.rollups import rebuild

    rebuild(
        apps.get_model("connections_app", "CheckResult"),
        apps.get_model("connections_app", "ResultRollup"),
        using=schema_editor.connection.alias,
    )


class Migration(migrations.Migration):
    dependencies = [("connections_app", "0018_result_rollups")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
