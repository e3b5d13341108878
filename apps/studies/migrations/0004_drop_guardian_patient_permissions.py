"""Drop django-guardian's per-patient object permissions. The care relation is the CareAssignment
row alone (apps/studies/access.py); the permission rows were a second copy of it that nothing read
any more. Dropping the tables removes the stale rows with them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0003_study_dicom_display"),
    ]

    operations = [
        migrations.DeleteModel(name="PatientGroupObjectPermission"),
        migrations.DeleteModel(name="PatientUserObjectPermission"),
    ]
