"""Embedded mode (no DATABASE_URL: SQLite in var/) at rest and under concurrent writes.

* var/ is owner-only (0700), the SQLite database and the dev secrets 0600, also when var/ existed
  with looser permissions; the web server's temporary files go to var/tmp (0700).
* Uploaded files never touch a temporary file: they stay in memory, up to the upload cap.
* Parallel signing and amending on SQLite wait for the write lock instead of failing with
  "database is locked" (issue 8, finding 7).

The first and last run in a fresh process with the embedded settings, as ``make run`` would.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
BACKEND = "django.contrib.auth.backends.ModelBackend"


def _embedded(code: str, var_dir: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python with the embedded defaults and ``var_dir`` as var/."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER")}
    env |= {"IMAGEMEDIX_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "imagemedix.settings"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


PERMISSIONS = """
import json, tempfile
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE probe (x integer)")
    cursor.execute("INSERT INTO probe VALUES (1)")
    import os, stat
    var = os.environ["IMAGEMEDIX_VAR_DIR"]
    modes = {name: oct(stat.S_IMODE(os.stat(os.path.join(var, name)).st_mode)) for name in sorted(os.listdir(var))}
import imagemedix.asgi  # the web server's entry point
print(json.dumps({"modes": modes, "tempdir": tempfile.gettempdir(), "journal": connection.cursor().execute(
    "PRAGMA journal_mode").fetchone()[0]}))
"""


def test_var_and_the_database_are_owner_only(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)  # as an older checkout left it
    result = _embedded(PERMISSIONS, var)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert _mode(var) == 0o700
    modes = report["modes"]
    # The database, its write-ahead log (open right now) and the dev secrets: owner read/write only.
    for name in ("db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm", "dev-secret-key", "dev-file-key"):
        assert modes[name] == "0o600", (name, modes)
    assert modes["tmp"] == "0o700"
    assert report["tempdir"] == str(var / "tmp")  # spooled request bodies stay inside var/
    assert report["journal"] == "wal"


@pytest.fixture
def temp_files(monkeypatch):
    """Every file this process opens in the temporary directory during the test (a spy on
    ``os.open``, which every ``tempfile`` function goes through; the files are still made)."""
    made: list[str] = []
    original = os.open
    temp_dir = tempfile.gettempdir()

    def spy(path, flags, *args, **kwargs):
        if str(path).startswith(temp_dir):
            made.append(str(path))
        return original(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    return made


@pytest.mark.django_db
@pytest.mark.parametrize("door", ["page", "api"])
def test_a_large_upload_stays_in_memory(client, world, settings, temp_files, door):
    """6 MB (above Django's old 5 MB spooling threshold, below the 50 MB cap) leaves no temporary
    file; it gets as far as validation, which reads it all and refuses it as not an image."""
    client.force_login(world.alice, backend=BACKEND)
    response = _upload(client, world, door, os.urandom(6 * 1024 * 1024))
    assert response.status_code == 400
    assert "not a PNG, JPEG or DICOM image" in response.content.decode()
    assert temp_files == []


@pytest.mark.django_db
@pytest.mark.parametrize("door", ["page", "api"])
def test_an_upload_over_the_cap_is_refused_for_its_size_without_a_temporary_file(
    client, world, settings, temp_files, door
):
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    client.force_login(world.alice, backend=BACKEND)
    response = _upload(client, world, door, os.urandom(3 * 1024 * 1024))
    assert response.status_code == 400
    assert "larger than the 1 MB limit" in response.content.decode()
    assert temp_files == []


def _upload(client, world, door: str, data: bytes):
    upload = SimpleUploadedFile("scan.png", data, content_type="image/png")
    if door == "page":
        url = reverse("studies:upload", kwargs={"hospital_slug": world.a.slug})
        return client.post(url, {"patient": world.paul_record.pk, "image": upload})
    url = reverse("api:study-list", kwargs={"hospital_slug": world.a.slug})
    return client.post(url, {"patient": world.paul_record.pk, "file": upload})


SIGN_AND_AMEND_RACE = """
import json, threading
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.db import OperationalError, connection
from django_scopes import scopes_disabled
from apps.accounts.models import Role
from apps.reports import services
from apps.reports.models import Report, ReportLocked
from apps.studies.models import Study, StudyStatus
from apps.studies.services import assign_doctor
from tests.factories import HospitalFactory, MembershipFactory, PatientFactory, UserFactory

STUDIES, DOCTORS = 6, 4
with scopes_disabled():
    hospital = HospitalFactory(slug="st-mary")
    patient = PatientFactory(hospital=hospital)
    doctors = [UserFactory(email=f"doctor{i}@st-mary.example") for i in range(DOCTORS)]
    for doctor in doctors:
        MembershipFactory(user=doctor, hospital=hospital, role=Role.DOCTOR)
        assign_doctor(patient, doctor)
    drafts = []
    for n in range(STUDIES):
        study = Study.objects.create(
            hospital=hospital, patient=patient, uploaded_by=doctors[0], status=StudyStatus.DONE,
            source_format="png", original_filename="scan.png", file_name=f"none-{n}.png.enc",
            file_sha256="0" * 64, file_key_id="test", file_size=1,
        )
        report = services.start_report(study, doctors[0])
        services.save_draft(report, doctors[0], findings="Clear.", impression="Normal.", final_label="normal")
        drafts.append(report.pk)

outcomes, errors = [], []

def at_once(jobs):
    barrier = threading.Barrier(len(jobs))
    def run(job):
        barrier.wait()
        try:
            with scopes_disabled():
                outcomes.append(job())
        except ReportLocked:
            outcomes.append("locked")  # a clean refusal: somebody else was first
        except OperationalError as exc:
            errors.append(str(exc))
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads: t.start()
    for t in threads: t.join()

def fetch(pk):
    return Report.objects.select_related("patient", "study").get(pk=pk)

def sign(pk, doctor):
    return lambda: services.sign_report(fetch(pk), doctor).status

def amend(pk, doctor):
    return lambda: services.amend_report(fetch(pk), doctor, reason="Clearer wording.").pk

def race():
    # Two doctors sign each draft at the same moment: one signs, the other is told it is signed.
    at_once([sign(pk, d) for pk in drafts for d in doctors[:2]])
    # Every doctor amends every signed report at once: one amendment draft per report.
    at_once([amend(pk, d) for pk in drafts for d in doctors])
    if errors:
        return
    with scopes_disabled():
        amendments = [Report.objects.get(supersedes_id=pk).pk for pk in drafts]
        for pk in amendments:
            services.save_draft(fetch(pk), doctors[1], findings="Clear.", impression="Amended.", final_label="normal")
    # And the amendments are signed at once, by two doctors each.
    at_once([sign(pk, d) for pk in amendments for d in doctors[2:]])

race()
with scopes_disabled():
    states = sorted(Report.objects.values_list("status", flat=True))
print(json.dumps({"errors": errors, "outcomes": [str(o) for o in outcomes], "states": states}))
"""


def test_parallel_signing_and_amending_on_sqlite_never_says_database_is_locked(tmp_path):
    result = _embedded(SIGN_AND_AMEND_RACE, tmp_path / "var", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert report["states"] == ["amended"] * 6 + ["signed"] * 6  # each study: v1 amended, v2 signed
    assert report["outcomes"].count("locked") == 6 + 6  # the second signer of every draft and amendment
