"""The clinician pages: caseload, patient, upload, study, image, and the hospital admin pages."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_scopes import scopes_disabled
from PIL import Image

from apps.accounts.auditchain import QUERIES_PER_EVENT
from apps.accounts.models import AuditEvent, Membership
from apps.studies.models import CareAssignment, Study
from apps.studies.services import assign_doctor

from ..factories import PatientFactory, make_study, png_bytes

pytestmark = pytest.mark.django_db


def url(name: str, world, **kwargs) -> str:
    return reverse(f"studies:{name}", kwargs={"hospital_slug": world.a.slug, **kwargs})


def events(action: str) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(action=action))


# --- Caseload ---------------------------------------------------------------------------------


def test_caseload_shows_only_the_doctors_patients(client, world):
    client.force_login(world.alice)
    response = client.get(url("caseload", world))
    assert response.status_code == 200
    html = response.content.decode()
    assert "POTTER, Paul" in html
    assert "Olga" not in html  # same hospital, not on Alice's caseload
    assert "Bea" not in html  # other hospital


def test_caseload_of_a_hospital_admin_lists_every_patient_of_the_hospital(client, world):
    client.force_login(world.carol)
    html = client.get(url("caseload", world)).content.decode()
    assert "POTTER, Paul" in html and "OWENS, Olga" in html
    assert "Bea" not in html


def test_empty_caseload_speaks_to_the_clinician(client, world):
    client.force_login(world.bob)
    response = client.get(url("caseload", world))
    assert response.status_code == 200
    assert "No patients on your caseload yet" in response.content.decode()


def test_caseload_shows_the_latest_study_status_with_live_markers(client, world):
    study = make_study(world.paul_record, world.alice)
    client.force_login(world.alice)
    html = client.get(url("caseload", world)).content.decode()
    assert f'data-study-status="{study.pk}"' in html
    assert "status-queued" in html


def test_caseload_search_by_name_and_mrn(client, world):
    with scopes_disabled():
        assign_doctor(world.other_a, world.alice)
    client.force_login(world.alice)
    html = client.get(url("caseload", world), {"q": "potter"}).content.decode()
    assert "POTTER, Paul" in html and "Olga" not in html
    html = client.get(url("caseload", world), {"q": "A-0002"}).content.decode()
    assert "OWENS, Olga" in html and "Paul" not in html
    html = client.get(url("caseload", world), {"q": "paul potter"}).content.decode()
    assert "POTTER, Paul" in html
    html = client.get(url("caseload", world), {"q": "nobody-like-this"}).content.decode()
    assert "No patient matches" in html


def _many_patients(world, n: int) -> None:
    with scopes_disabled():
        for i in range(n):
            patient = PatientFactory(hospital=world.a, mrn=f"Z-{i:04d}", family_name=f"Zed{i:02d}")
            assign_doctor(patient, world.alice)


def test_caseload_is_paginated(client, world):
    _many_patients(world, 30)  # + Paul = 31 → two pages of 25
    client.force_login(world.alice)
    first = client.get(url("caseload", world)).content.decode()
    assert "Page 1 of 2" in first and "ZED29" not in first
    second = client.get(url("caseload", world), {"page": 2}).content.decode()
    assert "ZED29" in second and "POTTER, Paul" not in second


def test_caseload_query_count_does_not_grow_with_patients(client, world, django_assert_max_num_queries):
    _many_patients(world, 30)
    with scopes_disabled():
        patients = list(world.paul_record.__class__.objects.filter(hospital=world.a, mrn__startswith="Z-")[:10])
    for patient in patients:
        make_study(patient, world.alice)
    client.force_login(world.alice)
    # Session, user, tenant, count, page, the annotated rows... and the caseload.view audit event.
    with django_assert_max_num_queries(9 + QUERIES_PER_EVENT):
        response = client.get(url("caseload", world))
    assert response.status_code == 200
    assert response.content.decode().count("data-study-status=") == 10


# --- Patient detail -----------------------------------------------------------------------------


def test_patient_detail_shows_history_and_is_audited(client, world):
    study = make_study(world.paul_record, world.alice)
    client.force_login(world.alice)
    response = client.get(url("patient_detail", world, pk=world.paul_record.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "A-0001" in html and f'data-study-message="{study.pk}"' in html
    assert [e.object_id for e in events("patient.view")] == [str(world.paul_record.pk)]


def test_patient_detail_of_someone_else_is_404(client, world):
    client.force_login(world.alice)
    assert client.get(url("patient_detail", world, pk=world.other_a.pk)).status_code == 404
    assert client.get(url("patient_detail", world, pk=world.bea_record.pk)).status_code == 404


def test_doctor_creates_a_patient_who_joins_their_caseload(client, world):
    client.force_login(world.bob)
    response = client.post(
        url("patient_create", world),
        {"mrn": "A-0100", "given_name": "Nina", "family_name": "North", "birth_date": "1990-02-03", "sex": "F"},
    )
    assert response.status_code == 302
    with scopes_disabled():
        assert CareAssignment.objects.filter(doctor=world.bob, patient__mrn="A-0100").exists()
    assert client.get(response["Location"]).status_code == 200


def test_patient_create_refuses_a_duplicate_mrn(client, world):
    client.force_login(world.alice)
    response = client.post(
        url("patient_create", world),
        {"mrn": "a-0001", "given_name": "X", "family_name": "Y", "birth_date": "1990-02-03", "sex": "F"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    # The summary at the top names the field and links to it.
    summary = html[html.index('<div class="error-summary"') : html.index("</div>", html.index('class="error-summary"'))]
    assert 'href="#id_mrn"' in summary
    assert "Medical record number (MRN): a patient with this MRN already exists in this hospital." in summary


# --- Upload -----------------------------------------------------------------------------------


def test_upload_page_names_the_patient_of_the_link(client, world):
    client.force_login(world.alice)
    response = client.get(url("upload", world) + f"?patient={world.paul_record.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    # A searchable field (no list of every patient on the page), the linked patient chosen.
    assert "<select" not in html and "Olga" not in html
    assert 'role="combobox"' in html and 'value="POTTER, Paul — MRN A-0001, born' in html
    assert f'name="patient" value="{world.paul_record.pk}"' in html
    assert "upload.js" in html and "combobox.js" in html


def test_patient_search_finds_only_the_caseload_page_by_page(client, world):
    from tests.factories import PatientFactory

    with scopes_disabled():
        for i in range(25):
            patient = PatientFactory(hospital=world.a, mrn=f"P-{i:03d}", given_name="Pat", family_name=f"Parker{i:02d}")
            from apps.studies.services import assign_doctor

            assign_doctor(patient, world.alice)
    client.force_login(world.alice)
    search = reverse("studies:patient_search", args=[world.a.slug])
    first = client.get(search, {"q": "park"}).json()
    assert first["count"] == 25 and len(first["results"]) == 20 and first["next_page"] == 2
    second = client.get(search, {"q": "park", "page": 2}).json()
    assert len(second["results"]) == 5 and second["next_page"] is None
    assert client.get(search, {"q": "potter a-0001"}).json()["results"] == [
        {"id": world.paul_record.pk, "label": "POTTER, Paul — MRN A-0001, born " + _born(world.paul_record)}
    ]
    # Olga is in the hospital but not on Alice's caseload; Bob's caseload is empty.
    assert client.get(search, {"q": "owens"}).json()["count"] == 0
    client.force_login(world.bob)
    assert client.get(search, {"q": "potter"}).json()["count"] == 0


def _born(patient) -> str:
    return f"{patient.birth_date.day} {patient.birth_date:%b %Y}"


def test_without_script_a_typed_name_that_matches_one_patient_is_enough(client, world):
    client.force_login(world.alice)
    image = SimpleUploadedFile("x.png", png_bytes(), "image/png")
    response = client.post(url("upload", world), {"patient_search": "Potter", "image": image})
    assert response.status_code == 302
    with scopes_disabled():
        assert Study.objects.get().patient == world.paul_record
    for typed, message in (
        ("", "Patient: type a name or MRN and choose the patient this image belongs to."),
        ("Owens", "Patient: no patient on your caseload matches “Owens”."),
    ):
        image = SimpleUploadedFile("x.png", png_bytes(seed=2), "image/png")
        response = client.post(url("upload", world), {"patient_search": typed, "image": image})
        assert response.status_code == 400
        assert f'<a href="#id_patient_search" data-error-target="id_patient_search">{message}</a>' in (
            response.content.decode().replace("&ldquo;", "“").replace("&rdquo;", "”")
        )


def test_the_same_file_twice_for_a_patient_asks_for_confirmation(client, world):
    data = png_bytes(seed=7)
    client.force_login(world.alice)
    first = client.post(
        url("upload", world), {"patient": world.paul_record.pk, "image": SimpleUploadedFile("a.png", data)}
    )
    assert first.status_code == 302
    again = client.post(
        url("upload", world),
        {"patient": world.paul_record.pk, "image": SimpleUploadedFile("b.png", data)},
        headers={"X-Requested-With": "XMLHttpRequest"},
    )
    assert again.status_code == 409 and again.json()["duplicate"] is True
    [problem] = again.json()["errors"]
    assert problem["target"] == "id_confirm_duplicate"
    assert problem["message"].startswith("Upload this file again: this patient already has this exact file")
    with scopes_disabled():
        assert Study.objects.count() == 1
    # Another patient with the same file is no duplicate; for Paul, confirming uploads it again.
    confirmed = client.post(
        url("upload", world),
        {"patient": world.paul_record.pk, "image": SimpleUploadedFile("b.png", data), "confirm_duplicate": "on"},
    )
    assert confirmed.status_code == 302
    with scopes_disabled():
        assert Study.objects.count() == 2


def test_upload_happy_path_stores_an_encrypted_study(client, world, media_files):
    data = png_bytes((128, 96), seed=3)
    client.force_login(world.alice)
    response = client.post(
        url("upload", world),
        {"patient": world.paul_record.pk, "image": SimpleUploadedFile("chest.png", data, "image/png")},
    )
    with scopes_disabled():
        study = Study.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("study_detail", world, pk=study.pk)
    assert (study.patient, study.uploaded_by, study.source_format) == (world.paul_record, world.alice, "png")
    assert (study.width, study.height, study.original_filename) == (128, 96, "chest.png")
    files = media_files()
    assert len(files) == 1
    raw = open(files[0], "rb").read()
    assert data not in raw and b"IHDR" not in raw
    assert [e.object_id for e in events("study.upload")] == [str(study.pk)]


def test_upload_by_xhr_answers_json(client, world):
    client.force_login(world.alice)
    response = client.post(
        url("upload", world),
        {"patient": world.paul_record.pk, "image": SimpleUploadedFile("x.png", png_bytes(), "image/png")},
        headers={"X-Requested-With": "XMLHttpRequest"},
    )
    assert response.status_code == 201
    assert response.json()["redirect"].startswith(f"/h/{world.a.slug}/studies/")
    bad = client.post(
        url("upload", world),
        {"patient": world.paul_record.pk, "image": SimpleUploadedFile("x.png", b"not an image", "image/png")},
        headers={"X-Requested-With": "XMLHttpRequest"},
    )
    assert bad.status_code == 400
    [problem] = bad.json()["errors"]
    assert problem["target"] == "id_image" and "not a PNG, JPEG or DICOM" in problem["message"]


@pytest.mark.parametrize(
    "name,payload,message",
    [
        ("empty.png", b"", "empty"),
        ("truncated.png", png_bytes((64, 64))[:100], "damaged or incomplete"),
        ("letter.png", b"%PDF-1.4 this is a letter", "not a PNG, JPEG or DICOM"),
    ],
)
def test_refused_upload_shows_the_reason_with_400_and_stores_nothing(
    client, world, media_files, name, payload, message
):
    client.force_login(world.alice)
    response = client.post(
        url("upload", world), {"patient": world.paul_record.pk, "image": SimpleUploadedFile(name, payload, "image/png")}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    with scopes_disabled():
        assert not Study.objects.exists()
    assert media_files() == []


def test_upload_for_a_patient_outside_the_caseload_is_refused(client, world, media_files):
    client.force_login(world.alice)
    response = client.post(
        url("upload", world),
        {"patient": world.other_a.pk, "image": SimpleUploadedFile("x.png", png_bytes(), "image/png")},
    )
    assert response.status_code == 400
    assert "Patient: choose a patient from your caseload." in response.content.decode()
    assert media_files() == []


# --- Study detail and image -------------------------------------------------------------------


def test_study_detail_shows_status_message_and_is_audited(client, world):
    study = make_study(world.paul_record, world.alice)
    client.force_login(world.alice)
    response = client.get(url("study_detail", world, pk=study.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<span class="status status-queued" data-study-status="{study.pk}">' in html
    assert f'data-study-message="{study.pk}"' in html and "Waiting for the AI second read." in html
    assert "assistive, not a diagnosis" in html
    assert [e.object_id for e in events("study.view")] == [str(study.pk)]


def test_study_image_returns_the_original_bytes_privately(client, world):
    data = png_bytes((40, 30), seed=7)
    study = make_study(world.paul_record, world.alice, data=data)
    client.force_login(world.alice)
    response = client.get(url("study_image", world, pk=study.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, no-store"
    assert response.content == data
    assert [e.object_id for e in events("study.view_image")] == [str(study.pk)]


def test_dicom_study_image_is_rendered_as_png(client, world):
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    data = open(path, "rb").read()
    study = make_study(world.paul_record, world.alice, data=data, filename="ct.dcm")
    client.force_login(world.alice)
    response = client.get(url("study_image", world, pk=study.pk))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (pydicom.dcmread(path).Columns, pydicom.dcmread(path).Rows)


# --- Hospital admin pages ---------------------------------------------------------------------


def test_audit_log_lists_and_filters_the_hospitals_events(client, world):
    client.force_login(world.carol)
    response = client.get(url("audit_log", world))
    assert response.status_code == 200
    html = response.content.decode()
    assert "care.assign" in html
    filtered = client.get(url("audit_log", world), {"action": "patient.create"}).content.decode()
    assert "<code>care.assign</code>" not in filtered


def test_audit_log_is_for_hospital_admins_only(client, world):
    client.force_login(world.alice)
    assert client.get(url("audit_log", world)).status_code == 403


def test_admin_deactivates_a_membership_but_not_their_own(client, world):
    client.force_login(world.carol)
    bob_m = Membership.objects.get(user=world.bob, hospital=world.a)
    asked = client.post(url("member_deactivate", world, pk=bob_m.pk))  # asks first, changes nothing
    assert asked.status_code == 200 and "Remove the doctor role of Dr Bob Brown?" in asked.content.decode()
    bob_m.refresh_from_db()
    assert bob_m.is_active
    assert client.post(url("member_deactivate", world, pk=bob_m.pk), {"confirm": "yes"}).status_code == 302
    bob_m.refresh_from_db()
    assert not bob_m.is_active
    own = Membership.objects.get(user=world.carol, hospital=world.a)
    client.post(url("member_deactivate", world, pk=own.pk), {"confirm": "yes"})
    own.refresh_from_db()
    assert own.is_active
    dora_m = Membership.objects.get(user=world.dora, hospital=world.b)
    assert client.post(url("member_deactivate", world, pk=dora_m.pk), {"confirm": "yes"}).status_code == 404


def test_admin_assigns_and_unassigns_a_doctor(client, world):
    client.force_login(world.carol)
    response = client.post(url("assignments", world), {"patient": world.other_a.pk, "doctor": world.bob.pk})
    assert response.status_code == 302
    client.force_login(world.bob)
    assert client.get(url("patient_detail", world, pk=world.other_a.pk)).status_code == 200
    client.force_login(world.carol)
    with scopes_disabled():
        assignment = CareAssignment.objects.get(patient=world.other_a, doctor=world.bob)
    asked = client.post(url("assignment_remove", world, pk=assignment.pk))  # asks first
    assert asked.status_code == 200 and "Take Olga Owens off the caseload of Dr Bob Brown?" in asked.content.decode()
    assert client.post(url("assignment_remove", world, pk=assignment.pk), {"confirm": "yes"}).status_code == 302
    client.force_login(world.bob)
    assert client.get(url("patient_detail", world, pk=world.other_a.pk)).status_code == 404


def test_admin_cannot_assign_a_doctor_of_another_hospital(client, world):
    client.force_login(world.carol)
    response = client.post(url("assignments", world), {"patient": world.other_a.pk, "doctor": world.dora.pk})
    assert response.status_code == 400
    with scopes_disabled():
        assert not CareAssignment.objects.filter(doctor=world.dora, hospital=world.a).exists()


# --- Accounts pages ---------------------------------------------------------------------------


def test_login_lockout_after_five_failures_refuses_the_right_password_with_the_same_message(client, world):
    from apps.accounts.forms import LOGIN_FAILED

    login = reverse("accounts:login")
    for _ in range(5):
        response = client.post(login, {"username": world.alice.email, "password": "wrong-password"})
        assert response.status_code in (200, 429)
        assert LOGIN_FAILED in response.content.decode()
    response = client.post(login, {"username": world.alice.email, "password": "correct-horse-battery-staple"})
    assert response.status_code in (200, 429, 403)
    assert LOGIN_FAILED in response.content.decode()
    assert "_auth_user_id" not in client.session
    # An unknown address gets exactly the same words.
    unknown = client.post(login, {"username": "nobody@example.org", "password": "whatever-it-is"})
    assert LOGIN_FAILED in unknown.content.decode()


def test_login_works_before_any_lockout(client, world):
    response = client.post(
        reverse("accounts:login"), {"username": world.alice.email, "password": "correct-horse-battery-staple"}
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(world.alice.pk)


@pytest.mark.parametrize(
    "name,heading",
    [
        ("accounts:password_change", "Change your password"),
        ("accounts:password_change_done", "Password changed"),
        ("accounts:password_reset", "Reset your password"),
        ("accounts:password_reset_done", "Check your e-mail"),
        ("accounts:password_reset_complete", "Password saved"),
    ],
)
def test_password_pages_render_in_the_portal_layout(client, world, name, heading):
    client.force_login(world.alice)
    response = client.get(reverse(name))
    assert response.status_code == 200
    html = response.content.decode()
    assert heading in html and 'class="skip-link"' in html and "Django administration" not in html


def test_password_reset_mails_a_link_that_sets_a_new_password(client, world, mailoutbox):
    response = client.post(reverse("accounts:password_reset"), {"email": world.alice.email})
    assert response.status_code == 302
    assert len(mailoutbox) == 1 and mailoutbox[0].subject == "Reset your ImageMedix password"
    link = next(line for line in mailoutbox[0].body.splitlines() if "/accounts/reset/" in line)
    path = link.split("testserver", 1)[1]
    form_page = client.get(path, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "A-fresh-Passphrase-42", "new_password2": "A-fresh-Passphrase-42"},
    )
    assert done.status_code == 302
    world.alice.refresh_from_db()
    assert world.alice.check_password("A-fresh-Passphrase-42")


def test_members_page_lists_only_this_hospitals_people(client, world):
    client.force_login(world.carol)
    html = client.get(url("members", world)).content.decode()
    assert "alice@st-mary.example" in html and "paul@patient.example" in html
    assert "dora@riverside.example" not in html


def test_tenant_pages_carry_the_live_script_and_notification_slot(client, world):
    client.force_login(world.alice)
    html = client.get(url("caseload", world)).content.decode()
    assert 'data-ws-url="/ws/h/st-mary/notifications/"' in html and "js/live.js" in html
    assert 'id="notif-link"' in html and 'id="notif-count"' in html
    about = client.get(reverse("accounts:about")).content.decode()
    assert "js/live.js" not in about and 'id="notif-link"' not in about


def test_navigation_fits_the_role(client, world):
    client.force_login(world.carol)
    html = client.get(url("caseload", world)).content.decode()
    assert url("members", world) in html and url("audit_log", world) in html
    client.force_login(world.alice)
    html = client.get(url("caseload", world)).content.decode()
    assert url("upload", world) in html and url("members", world) not in html


def test_every_page_names_a_favicon_that_exists(client):
    """Browsers ask for /favicon.ico on every page unless the page names an icon: a 404 per page."""
    from django.contrib.staticfiles import finders

    page = client.get("/accounts/login/").content.decode()
    assert 'rel="icon"' in page and "img/favicon.svg" in page
    assert finders.find("img/favicon.svg")
