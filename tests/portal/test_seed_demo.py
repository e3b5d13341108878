"""``manage.py seed_demo`` without ``../shared/datasets`` (as on a fresh machine elsewhere): the demo
world from the shipped sample images, its logins, real AI reads, and that a second run changes nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_scopes import scopes_disabled

from apps.accounts.models import Hospital, Membership, Role, User
from apps.chat.models import Message
from apps.reports.models import Report
from apps.studies.management.commands import seed_demo
from apps.studies.models import CareAssignment, Patient, Study
from apps.studies.storage import read_encrypted

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_datasets(monkeypatch, tmp_path):
    monkeypatch.setattr(seed_demo, "datasets_dir", lambda: tmp_path / "no-such-datasets")


def run() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    with scopes_disabled():
        return {
            "hospitals": Hospital.objects.count(),
            "users": User.objects.count(),
            "memberships": Membership.objects.count(),
            "patients": Patient.objects.count(),
            "assignments": CareAssignment.objects.count(),
            "studies": Study.objects.count(),
        }


def test_seed_demo_builds_the_demo_world_from_the_shipped_images(transactional_db, no_datasets, eager_celery):
    # Transactional, as in real use: the AI read is sent on commit, before the demo report is signed.
    output = run()
    assert counts() == {
        "hospitals": 2,
        "users": 1 + 2 * (1 + 2 + 4),
        "memberships": 2 * (1 + 2 + 4),
        "patients": 8,
        "assignments": 8,
        "studies": 8,
    }
    assert "sample images shipped in apps/studies/demo_images" in output
    assert "ImageMedix-demo-1" in output
    for email in (
        "admin@imagemedix.local",
        "admin@st-mary.imagemedix.local",
        "hart@st-mary.imagemedix.local",
        "john.smith@patients.imagemedix.local",
        "patel@riverside.imagemedix.local",
    ):
        assert email in output
    # The second step: admins always, doctors where their hospital says so; nothing secret is printed.
    assert "admin@st-mary.imagemedix.local *" in output and "patel@riverside.imagemedix.local *" in output
    assert "hart@st-mary.imagemedix.local *" not in output and "set up an authenticator" in output
    assert not TOTPDevice.objects.exists()
    hospital_admin = User.objects.get(email="admin@st-mary.imagemedix.local")
    assert hospital_admin.is_staff and not hospital_admin.is_superuser
    root = User.objects.get(email="admin@imagemedix.local")
    assert root.is_superuser and root.check_password("ImageMedix-demo-1")

    with scopes_disabled():
        st_mary = Hospital.objects.get(slug="st-mary")
        assert st_mary.name == "St Mary's Hospital"
        assert Hospital.objects.get(slug="riverside").name == "Riverside Clinic"
        assert Hospital.objects.get(slug="riverside").require_doctor_2fa and not st_mary.require_doctor_2fa
        for doctor in User.objects.filter(memberships__hospital=st_mary, memberships__role=Role.DOCTOR):
            assert CareAssignment.objects.filter(doctor=doctor).count() == 2
        for patient in Patient.objects.all():
            assert patient.user is not None and patient.user.check_password("ImageMedix-demo-1")
            assert Membership.objects.filter(user=patient.user, hospital=patient.hospital, role=Role.PATIENT).exists()
        study = Study.objects.filter(hospital=st_mary).first()
        data = read_encrypted(study.file_name, study.file_sha256)
        assert data.startswith(b"\xff\xd8") and study.source_format == "jpeg"
        assert study.uploaded_by is not None
        # Real images, so the demo shows real reads: each study is routed to its own specialist.
        routes = {
            s.original_filename: (s.status, s.diagnoses.get().route)
            for s in Study.objects.filter(hospital=st_mary).prefetch_related("diagnoses")
        }
    assert routes == {
        "IM-0001-0001.jpg": ("done", "chest_xray"),
        "person100_bacteria_475.jpg": ("done", "chest_xray"),
        "Te-glTr_0000.jpg": ("done", "brain_mri"),
        "Te-noTr_0001.jpg": ("done", "brain_mri"),
    }
    # The first patient of each hospital has a signed report (PDF rendered) and a message, so the
    # patient portal has something to show from the first login.
    with scopes_disabled():
        reports = sorted(Report.objects.values_list("patient__user__email", "status", "pdf_status", "final_label"))
        messages = sorted(Message.objects.values_list("conversation__patient__user__email", "sender__email"))
    assert reports == [
        ("emma.brown@patients.imagemedix.local", "signed", "ready", "normal"),
        ("john.smith@patients.imagemedix.local", "signed", "ready", "normal"),
    ]
    assert messages == [
        ("emma.brown@patients.imagemedix.local", "patel@riverside.imagemedix.local"),
        ("john.smith@patients.imagemedix.local", "hart@st-mary.imagemedix.local"),
    ]


def test_seed_demo_is_idempotent(no_datasets, eager_celery):
    run()
    before = counts()
    output = run()
    assert counts() == before
    assert "study #" not in output  # studies are only created the first time


def test_seed_demo_logs_in_the_demo_doctor_to_a_caseload(client, no_datasets, eager_celery):
    run()
    response = client.post(
        "/accounts/login/", {"username": "hart@st-mary.imagemedix.local", "password": "ImageMedix-demo-1"}
    )
    assert response.status_code == 302
    caseload = client.get("/h/st-mary/")
    assert caseload.status_code == 200
    html = caseload.content.decode()
    assert "SMITH, John" in html and "GARCIA, Maria" in html and "CHEN, Wei" not in html


def test_seed_demo_patient_reads_the_signed_report(client, transactional_db, no_datasets, eager_celery):
    run()
    client.post(
        "/accounts/login/", {"username": "john.smith@patients.imagemedix.local", "password": "ImageMedix-demo-1"}
    )
    home = client.get("/h/st-mary/my/").content.decode()
    assert "Read the report" in home and "No radiographic evidence of pneumonia" not in home
    with scopes_disabled():
        report = Report.objects.get(patient__user__email="john.smith@patients.imagemedix.local")
    page = client.get(f"/h/st-mary/my/reports/{report.pk}/")
    assert page.status_code == 200 and "No radiographic evidence of pneumonia" in page.content.decode()
