"""The audit trail keeps who acted (a snapshot beside a protected foreign key), the patient an
event concerns, and a hash chain over all events. Events written before this migration are
snapshotted and chained here, in id order."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def chain_existing_events(apps, schema_editor):
    from apps.accounts.auditchain import GENESIS, HEAD_PK, event_hash

    AuditEvent = apps.get_model("accounts", "AuditEvent")
    AuditChainHead = apps.get_model("accounts", "AuditChainHead")
    prev, count, last_id = GENESIS, 0, None
    for event in AuditEvent.objects.select_related("actor").order_by("id").iterator(chunk_size=2000):
        if event.actor is not None:
            event.actor_email, event.actor_name = event.actor.email, event.actor.full_name[:200]
        # Only the patient record itself is known here without reaching into other apps' tables.
        if event.object_type == "studies.patient" and event.object_id.isdigit():
            event.patient_id = int(event.object_id)
        event.prev_hash = prev
        AuditEvent.objects.filter(pk=event.pk).update(
            actor_email=event.actor_email, actor_name=event.actor_name, patient_id=event.patient_id, prev_hash=prev
        )
        prev, count, last_id = event_hash(AuditEvent.objects.get(pk=event.pk)), count + 1, event.pk
    AuditChainHead.objects.create(pk=HEAD_PK, last_event_id=last_id, last_hash=prev, length=count)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_invitation"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("last_event_id", models.PositiveBigIntegerField(blank=True, null=True)),
                ("last_hash", models.CharField(max_length=64)),
                ("length", models.PositiveBigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name="auditevent",
            name="actor_email",
            field=models.EmailField(blank=True, max_length=254),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="actor_name",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="patient_id",
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", help_text="SHA-256 of the previous event in the chain.", max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="audit_events",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["hospital", "patient_id"], name="audit_hospital_patient"),
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop),
    ]
