"""Every read and change of finding 3 of issue 8 writes an audit event: patients, studies and
reports opened in ``/admin/``, a patient deleted there, the caseload page, staff or superuser
status granted, refused access (another hospital, another hospital's objects, a role that does not
allow the page, in pages, API and admin). The actor is kept as a snapshot, and users named by
audit events are deactivated, never deleted."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db.models import ProtectedError
from django.test import RequestFactory
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts import audit
from apps.accounts.models import AuditEvent, User
from apps.studies.models import Patient
from tests.auth import APIClient
from tests.factories import UserFactory, make_study
from tests.reports.helpers import write_report

BACKEND = "django.contrib.auth.backends.ModelBackend"
IP = "203.0.113.7"

_since: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _only_events_of_the_test(world):
    """Ignore what setting up the personas wrote."""
    with scopes_disabled():
        _since["id"] = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def events(action: str, **filters) -> list[AuditEvent]:
    with scopes_disabled():
        found = AuditEvent.objects.filter(action=action, id__gt=_since["id"], **filters).order_by("id")
        return list(found.select_related("actor", "hospital"))


def the_event(action: str, **filters) -> AuditEvent:
    found = events(action, **filters)
    assert len(found) == 1, f"expected one {action!r} event, found {[e.detail for e in found]}"
    return found[0]


def log_in(client, user, *, staff: bool = False):
    if staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    client.force_login(user, backend=BACKEND)
    client.defaults["REMOTE_ADDR"] = IP
    return client


def admin_url(obj, view: str = "change") -> str:
    args = [obj.pk] if view in ("change", "delete") else []
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=args)


# --- the actor snapshot -------------------------------------------------------------------------


def test_the_actor_is_kept_as_a_snapshot(world):
    event = audit.record("patient.view", hospital=world.a, actor=world.alice, obj=world.paul_record, ip=IP)
    snapshot = (event.actor_id, event.actor_email, event.actor_name)
    assert snapshot == (world.alice.pk, world.alice.email, "Dr Alice Adams")
    assert event.patient_id == world.paul_record.pk
    world.alice.full_name = "Dr Alice Adams-Smith"
    world.alice.save()
    event.refresh_from_db()
    assert event.actor_name == "Dr Alice Adams" and event.actor_display == "Dr Alice Adams"


def test_the_patient_of_an_event_comes_from_its_object(world):
    study = make_study(world.paul_record, world.alice)
    assert the_event("study.upload").patient_id == world.paul_record.pk
    assert audit.record("x.y", hospital=world.a, obj=study).patient_id == world.paul_record.pk
    assert audit.record("x.y", hospital=world.a, obj=world.alice).patient_id is None
    assert audit.record("x.y", hospital=world.a).patient_id is None


def test_a_user_named_by_audit_events_cannot_be_deleted(world):
    audit.record("patient.view", hospital=world.a, actor=world.alice, obj=world.paul_record)
    with scopes_disabled(), pytest.raises(ProtectedError):
        world.alice.delete()
    assert User.objects.filter(pk=world.alice.pk).exists()


def test_deleting_a_user_is_audited(world):
    """Possible only for an account no event names as its actor (made by mistake, say)."""
    with scopes_disabled():
        stray = UserFactory(email="stray@example.org", full_name="Stray Account")
        stray_id = stray.pk
        stray.delete()
    event = the_event("user.delete")
    assert event.object_id == str(stray_id) and event.object_repr == "Stray Account"
    assert event.detail == {"user": stray_id, "email": "stray@example.org"}


# --- users in /admin/ -----------------------------------------------------------------------------


@pytest.fixture
def platform_admin(client, world):
    with scopes_disabled():
        root = User.objects.create_superuser("root@imagemedix.example", "a-long-root-password", full_name="Root")
    return log_in(client, root), root


def test_the_admin_offers_deactivate_instead_of_delete(platform_admin, world):
    client, root = platform_admin
    assert client.post(admin_url(world.bob, "delete"), {"post": "yes"}).status_code == 403
    changelist = client.get(reverse("admin:accounts_user_changelist"))
    actions = [value for value, _ in changelist.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions and "deactivate_users" in actions

    response = client.post(
        reverse("admin:accounts_user_changelist"), {"action": "deactivate_users", "_selected_action": [world.bob.pk]}
    )
    assert response.status_code == 302
    world.bob.refresh_from_db()
    assert not world.bob.is_active and User.objects.filter(pk=world.bob.pk).exists()
    event = the_event("user.deactivate")
    assert event.actor == root and event.object_id == str(world.bob.pk) and event.ip_address == IP


def test_granting_and_revoking_staff_and_superuser_is_audited(world, platform_admin):
    _, root = platform_admin
    request = RequestFactory().post("/admin/accounts/user/", REMOTE_ADDR=IP)
    request.user = root
    with audit.serving(request):
        world.bob.is_staff = world.bob.is_superuser = True
        world.bob.save()
    bob = str(world.bob.pk)
    for action in ("user.staff_granted", "user.superuser_granted"):
        event = the_event(action, object_id=bob)
        assert event.actor == root and event.hospital is None and event.ip_address == IP
        assert event.detail == {"user": world.bob.pk}
    world.bob.is_superuser = False
    world.bob.save(update_fields=["is_superuser"])
    assert the_event("user.superuser_revoked").actor is None  # outside a request: nobody to name
    world.bob.save()  # nothing changed: nothing written
    assert len(events("user.staff_granted", object_id=bob)) == 1


def test_createsuperuser_is_audited(world):
    call_command("createsuperuser", "--noinput", "--email", "ops@imagemedix.example", stdout=io.StringIO())
    new = User.objects.get(email="ops@imagemedix.example")
    assert the_event("user.superuser_granted").object_id == str(new.pk)
    assert the_event("user.staff_granted").actor is None


def test_the_admins_user_change_form_audits_a_staff_grant(platform_admin, world):
    client, root = platform_admin
    form = client.get(admin_url(world.bob)).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update(
        {
            "is_staff": "on",
            "is_active": "on",
            "groups": [],
            "user_permissions": [],
            "last_login_0": "",
            "last_login_1": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        }
    )
    data.pop("is_superuser", None)
    response = client.post(admin_url(world.bob), data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert the_event("user.staff_granted", object_id=str(world.bob.pk)).actor == root


# --- patient data in /admin/ -------------------------------------------------------------------------


@pytest.fixture
def carol_admin(client, world):
    return log_in(client, world.carol, staff=True)


def test_opening_a_patient_a_study_or_a_report_in_the_admin_is_audited(carol_admin, world):
    study = make_study(world.paul_record, world.alice)
    report = write_report(study, world.alice, sign=True)
    for obj, noun in ((world.paul_record, "patient"), (study, "study"), (report, "report")):
        assert carol_admin.get(admin_url(obj)).status_code == 200
        event = the_event(f"{noun}.view", detail__via="admin")
        assert event.actor == world.carol and event.hospital == world.a and event.ip_address == IP
        assert event.object_id == str(obj.pk) and event.patient_id == world.paul_record.pk


def test_the_admins_patient_list_is_audited(carol_admin, world):
    assert carol_admin.get(reverse("admin:studies_patient_changelist"), {"q": "Potter"}).status_code == 200
    event = the_event("patient.list", detail__via="admin")
    assert event.hospital == world.a and event.actor == world.carol and event.detail["query"] == "q=Potter"


def test_deleting_a_patient_in_the_admin_is_audited(carol_admin, world):
    olga = world.other_a
    response = carol_admin.post(admin_url(olga, "delete"), {"post": "yes"})
    assert response.status_code == 302
    with scopes_disabled():
        assert not Patient.objects.filter(pk=olga.pk).exists()
    event = the_event("patient.delete")
    assert event.actor == world.carol and event.hospital == world.a and event.ip_address == IP
    assert event.patient_id == olga.pk and "OWENS" in event.object_repr


def test_bulk_deleting_patients_in_the_admin_audits_each(carol_admin, world):
    response = carol_admin.post(
        reverse("admin:studies_patient_changelist"),
        {"action": "delete_selected", "_selected_action": [world.other_a.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert the_event("patient.delete").patient_id == world.other_a.pk


# --- the caseload -----------------------------------------------------------------------------------


def test_the_caseload_page_is_audited(client, world):
    log_in(client, world.alice)
    response = client.get(reverse("studies:caseload", args=[world.a.slug]), {"q": "potter"})
    assert response.status_code == 200
    event = the_event("caseload.view")
    assert event.actor == world.alice and event.hospital == world.a and event.ip_address == IP
    assert event.detail == {"q": "potter", "page": 1, "patients": [world.paul_record.pk]}


# --- refused access --------------------------------------------------------------------------------


def test_a_page_of_a_hospital_one_is_not_a_member_of(client, world):
    log_in(client, world.alice)
    assert client.get(reverse("studies:caseload", args=[world.b.slug])).status_code == 404
    event = the_event("access.refused")
    assert event.actor == world.alice and event.hospital == world.b and event.ip_address == IP
    assert event.detail["reason"] == "not a member of this hospital" and event.detail["status"] == 404
    assert event.detail["path"] == f"/h/{world.b.slug}/"


def test_a_hospital_that_does_not_exist(client, world):
    log_in(client, world.alice)
    assert client.get(reverse("studies:caseload", args=["no-such-place"])).status_code == 404
    event = the_event("access.refused")
    assert event.hospital is None and event.detail["slug"] == "no-such-place"


def test_another_hospitals_object_through_ones_own_hospital(client, world):
    study = make_study(world.paul_record, world.alice)
    log_in(client, world.dora)
    assert client.get(reverse("studies:study_detail", args=[world.b.slug, study.pk])).status_code == 404
    event = the_event("access.refused")
    assert event.actor == world.dora and event.hospital == world.b
    assert event.detail["view"] == "studies:study_detail" and event.detail["status"] == 404
    assert event.detail["reason"] == "No such study."


def test_a_page_ones_role_does_not_allow(client, world):
    log_in(client, world.alice)
    assert client.get(reverse("studies:audit_log", args=[world.a.slug])).status_code == 403
    event = the_event("access.refused")
    assert event.hospital == world.a and event.detail["status"] == 403 and event.detail["method"] == "GET"


def test_refusals_in_the_api(world):
    study = make_study(world.paul_record, world.alice)
    api = APIClient(REMOTE_ADDR=IP)
    api.force_login(world.dora, backend=BACKEND)
    assert api.get(reverse("api:study-detail", args=[world.b.slug, study.pk])).status_code == 404
    event = the_event("access.refused")
    assert event.hospital == world.b and event.detail["view"] == "api:study-detail" and event.ip_address == IP
    assert api.get(reverse("api:study-list", args=[world.a.slug])).status_code == 404
    assert len(events("access.refused", hospital=world.a)) == 1, "a non-member is audited once"


def test_another_hospitals_row_in_the_admin(carol_admin, world):
    assert carol_admin.get(admin_url(world.bea_record)).status_code == 404
    event = the_event("access.refused")
    assert event.actor == world.carol and event.hospital is None
    assert event.detail["view"] == "admin:studies_patient_change"


def test_anonymous_requests_are_sent_to_log_in_and_not_audited(client, world):
    assert client.get(reverse("studies:caseload", args=[world.b.slug])).status_code == 302
    assert events("access.refused") == []


def test_seeing_ones_own_data_is_no_refusal(client, world):
    log_in(client, world.alice)
    assert client.get(reverse("studies:patient_detail", args=[world.a.slug, world.paul_record.pk])).status_code == 200
    assert events("access.refused") == []
