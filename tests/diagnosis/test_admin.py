"""Admin: the model registry is for platform admins; AI reads and feedback are read-only and a
hospital admin sees only their own hospital's rows."""

from __future__ import annotations

from django.urls import reverse
from django_scopes import scopes_disabled

from apps.diagnosis.models import ModelVersion
from tests.factories import UserFactory, make_study

from .helpers import fake_version, make_diagnosis


def _staff(user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def test_hospital_admin_sees_only_their_hospitals_diagnoses_read_only(world, client):
    a_study = make_study(world.paul_record, world.alice)
    b_study = make_study(world.bea_record, world.dora)
    with scopes_disabled():
        mine = make_diagnosis(a_study)
        theirs = make_diagnosis(b_study)
    client.force_login(_staff(world.carol))

    response = client.get(reverse("admin:diagnosis_diagnosis_changelist"))
    assert response.status_code == 200
    listed = {obj.pk for obj in response.context["cl"].result_list}
    assert listed == {mine.pk}
    assert client.get(reverse("admin:diagnosis_diagnosis_change", args=[theirs.pk])).status_code == 404
    page = client.get(reverse("admin:diagnosis_diagnosis_change", args=[mine.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content  # read-only
    assert client.get(reverse("admin:diagnosis_feedback_changelist")).status_code == 200


def test_model_registry_is_for_platform_admins(world, client):
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        fake_version("chest", "a", is_active=True)
        challenger = fake_version("chest", "b")
    client.force_login(_staff(world.carol))
    assert client.get(reverse("admin:diagnosis_modelversion_changelist")).status_code == 403

    root = UserFactory(email="root@platform.example", is_staff=True, is_superuser=True)
    client.force_login(root)
    response = client.get(reverse("admin:diagnosis_modelversion_changelist"))
    assert response.status_code == 200 and b"0.900" in response.content  # accuracy column
    response = client.post(
        reverse("admin:diagnosis_modelversion_changelist"),
        {"action": "make_active", "_selected_action": [challenger.pk]},
    )
    assert response.status_code == 302
    assert ModelVersion.objects.get(task="chest", is_active=True) == challenger


def test_a_doctor_with_staff_flag_but_no_admin_role_sees_nothing(world, client):
    client.force_login(_staff(world.bob))
    assert client.get(reverse("admin:diagnosis_diagnosis_changelist")).status_code == 403
