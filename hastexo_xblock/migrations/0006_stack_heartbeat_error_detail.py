"""The worker's liveness signal for a launch, and the operator's side of an error."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hastexo_xblock", "0005_stack_desktop")]

    operations = [
        migrations.AddField(
            model_name="stack",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="stack",
            name="error_detail",
            field=models.TextField(blank=True, default=""),
        ),
    ]
