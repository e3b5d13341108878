"""The Django admin: a hospital admin (staff, not superuser) sees and edits only their hospital's
rows; a platform admin sees everything; audit events are read-only for everyone."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent, Hospital, Membership, User
from apps.accounts.tenancy import resolve_tenant
from apps.studies.access import caseload
from apps.studies.models import CareAssignment, Patient, Study

from ..factories import make_study

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"


@pytest.fixture
def carol_staff(client, world):
    world.carol.is_staff = True
    world.carol.save(update_fields=["is_staff"])
    client.force_login(world.carol, backend=BACKEND)
    make_study(world.paul_record, world.alice)
    make_study(world.bea_record, world.dora)
    return world


def changelist_rows(client, model) -> list:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = client.get(url)
    assert response.status_code == 200, url
    return list(response.context["cl"].result_list)


def hospitals_of(rows) -> set[int | None]:
    return {row.hospital_id for row in rows}


@pytest.mark.parametrize("model", [Patient, Study, Membership, AuditEvent, CareAssignment])
def test_hospital_admin_sees_only_their_hospital_rows(client, carol_staff, model):
    rows = changelist_rows(client, model)
    assert rows, f"{model.__name__}: St Mary's rows expected"
    assert hospitals_of(rows) == {carol_staff.a.pk}


def test_hospital_admin_sees_only_their_hospital_and_its_people(client, carol_staff):
    assert [h.slug for h in changelist_rows(client, Hospital)] == ["st-mary"]
    emails = {u.email for u in changelist_rows(client, User)}
    assert "alice@st-mary.example" in emails and "dora@riverside.example" not in emails


@pytest.mark.parametrize(
    "model,obj",
    [
        (Patient, lambda w: w.bea_record),
        (Study, lambda w: Study.objects.filter(hospital=w.b).first()),
        (Membership, lambda w: Membership.objects.get(user=w.dora)),
        (AuditEvent, lambda w: AuditEvent.objects.filter(hospital=w.b).first()),
        (Hospital, lambda w: w.b),
        (User, lambda w: w.dora),
    ],
)
def test_other_hospital_objects_are_not_found(client, carol_staff, model, obj):
    with scopes_disabled():
        target = obj(carol_staff)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[target.pk])
    assert client.get(url).status_code in (403, 404)
    assert client.post(url, {}).status_code in (403, 404)


def test_hospital_admin_opens_their_own_patient(client, carol_staff):
    url = reverse("admin:studies_patient_change", args=[carol_staff.paul_record.pk])
    response = client.get(url)
    assert response.status_code == 200
    hospital_choices = list(response.context["adminform"].form.fields["hospital"].queryset)
    assert hospital_choices == [carol_staff.a]


def test_hospital_admin_adds_a_patient_only_in_their_hospital(client, carol_staff):
    url = reverse("admin:studies_patient_add")
    data = {
        "hospital": carol_staff.b.pk,
        "mrn": "X-1",
        "given_name": "Eve",
        "family_name": "Evans",
        "birth_date": "1970-01-01",
        "sex": "F",
        "care_assignments-TOTAL_FORMS": "0",
        "care_assignments-INITIAL_FORMS": "0",
    }
    response = client.post(url, data)
    assert response.status_code == 200  # the form is re-shown: Riverside is not a valid choice
    with scopes_disabled():
        assert not Patient.objects.filter(mrn="X-1").exists()
    response = client.post(url, {**data, "hospital": carol_staff.a.pk})
    assert response.status_code == 302
    with scopes_disabled():
        assert Patient.objects.get(mrn="X-1").hospital == carol_staff.a


def test_assignment_in_the_admin_grants_the_doctor_access(client, carol_staff):
    w = carol_staff
    response = client.post(reverse("admin:studies_careassignment_add"), {"patient": w.other_a.pk, "doctor": w.bob.pk})
    assert response.status_code == 302
    with scopes_disabled():
        assert list(caseload(resolve_tenant(w.bob, w.a.slug))) == [w.other_a]
        assert AuditEvent.objects.filter(action="care.assign", actor=w.carol).exists()
    refused = client.post(reverse("admin:studies_careassignment_add"), {"patient": w.other_a.pk, "doctor": w.paul.pk})
    assert refused.status_code == 200  # Paul is a patient, not a doctor


def test_the_doctor_list_of_an_assignment_offers_only_the_hospitals_doctors(client, carol_staff):
    w = carol_staff
    html = client.get(reverse("admin:studies_careassignment_add")).content.decode()
    doctors = re.search(r'<select name="doctor".*?</select>', html, re.S).group(0)
    offered = set(map(int, re.findall(r'<option value="(\d+)"', doctors)))
    assert offered == {w.alice.pk, w.bob.pk}  # not Paul (patient), Carol (admin) or Dora (hospital B)


def test_audit_events_are_read_only_even_for_platform_admins(client, world):
    root = User.objects.create_superuser("root@imagemedix.local", "x-very-long-password")
    client.force_login(root, backend=BACKEND)
    assert client.get(reverse("admin:accounts_auditevent_add")).status_code == 403
    with scopes_disabled():
        event = AuditEvent.objects.first()
    url = reverse("admin:accounts_auditevent_change", args=[event.pk])
    response = client.get(url)
    assert response.status_code == 200 and not response.context["has_change_permission"]
    assert client.post(reverse("admin:accounts_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403


def test_platform_admin_sees_every_hospital(client, world):
    make_study(world.bea_record, world.dora)
    root = User.objects.create_superuser("root@imagemedix.local", "x-very-long-password")
    client.force_login(root, backend=BACKEND)
    assert hospitals_of(changelist_rows(client, Patient)) == {world.a.pk, world.b.pk}
    assert hospitals_of(changelist_rows(client, Study)) == {world.b.pk}


def test_staff_without_hospital_admin_role_sees_nothing(client, world):
    world.alice.is_staff = True
    world.alice.save(update_fields=["is_staff"])
    client.force_login(world.alice, backend=BACKEND)
    assert client.get(reverse("admin:studies_patient_changelist")).status_code == 403
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200 and not index.context["app_list"]


@pytest.mark.parametrize("model", [Patient, Study, Membership, AuditEvent, CareAssignment, Hospital, User])
def test_hospital_admin_pages_never_name_the_other_hospital(client, carol_staff, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    html = client.get(url).content.decode()
    assert "Riverside" not in html and "Bea" not in html and "dora@" not in html


def test_hospital_admin_can_open_and_save_their_hospital(client, carol_staff):
    """Issue 8, finding 7: the change page used to answer 500 (KeyError 'slug'), because the slug
    is read-only for hospital admins but was still prepopulated from the name."""
    w = carol_staff
    url = reverse("admin:accounts_hospital_change", args=[w.a.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert b'name="slug"' not in page.content  # shown, not editable
    response = client.post(url, {"name": "St Mary's Hospital (North)", "address": "1 High Street"})
    assert response.status_code == 302, response.content[:2000]
    w.a.refresh_from_db()
    assert (w.a.name, w.a.address, w.a.slug, w.a.is_active) == (
        "St Mary's Hospital (North)",
        "1 High Street",
        "st-mary",
        True,
    )


def test_platform_admin_still_gets_the_slug_prepopulated(client, world):
    root = User.objects.create_superuser(email="root@imagemedix.example", password="x")
    client.force_login(root, backend=BACKEND)
    page = client.get(reverse("admin:accounts_hospital_change", args=[world.a.pk]))
    assert page.status_code == 200
    assert b'name="slug"' in page.content
    assert b"prepopulated" in page.content
