"""``manage.py seed_demo``: a demo world to log in to, safe to run again and again (``make run``
runs it on every start).

Two hospitals, each with a hospital admin, two doctors and four patients with their own logins,
two patients on each doctor's caseload, and a platform admin. Riverside Clinic requires two-step
verification of its doctors, St Mary's does not; admins always need it. No second-factor secret is
seeded or printed: whoever must use one sets up their own authenticator app at their first login
(the set-up page shows a QR code and the key as text), exactly as in production. The first time a hospital is seeded
it also gets a few studies: real chest X-rays and brain MRIs from ``../shared/datasets/*/test``
when that folder exists beside the checkout, otherwise the eight such images shipped in
``apps/studies/demo_images``. Studies go through the
same validation and ``submit_study`` as an upload, so the AI read runs as it would for a doctor
(inline in the embedded mode); a study that fails is reported and does not stop the seeding.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from apps.accounts.models import Hospital, Membership, Role, User
from apps.accounts.tenancy import tenant_scope
from apps.diagnosis.pipeline.exclusions import DEFAULT_EXCLUSIONS, Exclusions
from apps.studies import services
from apps.studies.models import Patient, Study
from apps.studies.validation import validate_image_bytes

DEMO_PASSWORD = "ImageMedix-demo-1"  # noqa: S105 - public demo password, printed on purpose
SUPERUSER_EMAIL = "admin@imagemedix.local"


@dataclass(frozen=True)
class DemoPatient:
    given: str
    family: str
    birth: dt.date
    sex: str

    @property
    def email(self) -> str:
        return f"{self.given}.{self.family}@patients.imagemedix.local".lower()


@dataclass(frozen=True)
class DemoHospital:
    slug: str
    name: str
    mrn_prefix: str
    admin: str
    doctors: tuple[tuple[str, str], ...]  # (e-mail local part, full name)
    patients: tuple[DemoPatient, ...]
    require_doctor_2fa: bool = False

    def email(self, local: str) -> str:
        return f"{local}@{self.slug}.imagemedix.local"


HOSPITALS = (
    DemoHospital(
        slug="st-mary",
        name="St Mary's Hospital",
        mrn_prefix="SM",
        admin="Sarah Mitchell",
        doctors=(("hart", "Dr Hannah Hart"), ("okafor", "Dr Omar Okafor")),
        patients=(
            DemoPatient("John", "Smith", dt.date(1956, 3, 14), "M"),
            DemoPatient("Maria", "Garcia", dt.date(1971, 8, 2), "F"),
            DemoPatient("Wei", "Chen", dt.date(1988, 11, 23), "M"),
            DemoPatient("Aisha", "Khan", dt.date(1994, 5, 9), "F"),
        ),
    ),
    DemoHospital(
        slug="riverside",
        name="Riverside Clinic",
        mrn_prefix="RC",
        admin="Robert Lane",
        doctors=(("patel", "Dr Priya Patel"), ("silva", "Dr Lucas Silva")),
        patients=(
            DemoPatient("Emma", "Brown", dt.date(1963, 1, 30), "F"),
            DemoPatient("Noah", "Wilson", dt.date(1979, 7, 17), "M"),
            DemoPatient("Olivia", "Taylor", dt.date(1985, 12, 5), "F"),
            DemoPatient("Liam", "Murphy", dt.date(2001, 4, 21), "M"),
        ),
        require_doctor_2fa=True,
    ),
)

#: Which test images each hospital gets: (task folder, class folder), one per patient.
STUDY_PLAN = (
    ("chest_xray", "normal"),
    ("chest_xray", "bacterial_pneumonia"),
    ("brain_mri", "glioma"),
    ("brain_mri", "no_tumor"),
)


#: Findings and impression of the demo's signed report, by the study's (dataset) label.
DEMO_REPORTS = {
    "normal": (
        "Lungs are clear. No focal consolidation, pleural effusion or pneumothorax. "
        "Heart size and mediastinal contours are within normal limits.",
        "No radiographic evidence of pneumonia.",
    ),
}


def datasets_dir() -> Path:
    return Path(settings.BASE_DIR).parent / "shared" / "datasets"


#: Real test-split images shipped with the app (see its README), laid out like the datasets.
SHIPPED_IMAGES = Path(__file__).resolve().parents[2] / "demo_images"


def dataset_image(root: Path, task: str, label: str, index: int) -> tuple[bytes, str] | None:
    """The ``index``-th test image of ``task``/``label`` by name, skipping the images the dataset
    exclusion list says are not what their folder says (head CT filed as brain MRI)."""
    folder = root / task / "test" / label
    if not folder.is_dir():
        return None
    skip = Exclusions.load(DEFAULT_EXCLUSIONS).names(task)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"} and p.name not in skip)
    if not files:
        return None
    chosen = files[index % len(files)]
    return chosen.read_bytes(), chosen.name


class Command(BaseCommand):
    help = "Create (or top up) the demo hospitals, people, caseloads and studies. Safe to re-run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--datasets", help="Folder with chest_xray/ and brain_mri/ (default: ../shared/datasets)")
        parser.add_argument("--no-studies", action="store_true", help="Do not create demo studies.")

    def handle(self, *args: Any, **options: Any) -> None:
        root = Path(options["datasets"]) if options.get("datasets") else datasets_dir()
        use_datasets = root.is_dir()
        logins: list[tuple[str, str, str, bool]] = []

        superuser = User.objects.filter(email__iexact=SUPERUSER_EMAIL).first()
        if superuser is None:
            User.objects.create_superuser(SUPERUSER_EMAIL, DEMO_PASSWORD, full_name="Platform Admin")
            self.stdout.write(f"Created platform admin {SUPERUSER_EMAIL}")
        logins.append(("Platform admin", "all hospitals (/admin/)", SUPERUSER_EMAIL, True))

        for number, spec in enumerate(HOSPITALS):
            hospital, created = Hospital.objects.get_or_create(
                slug=spec.slug, defaults={"name": spec.name, "require_doctor_2fa": spec.require_doctor_2fa}
            )
            if created:
                self.stdout.write(f"Created hospital {spec.name}")
            with tenant_scope(hospital):
                self._seed_people(spec, hospital, logins)
                if not options["no_studies"]:
                    self._seed_studies(spec, hospital, root if use_datasets else SHIPPED_IMAGES, number)

        self._print_logins(logins, use_datasets, root)

    # --- people -----------------------------------------------------------------------------
    def _user(self, email: str, full_name: str) -> User:
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=DEMO_PASSWORD, full_name=full_name)
        return user

    def _member(self, user: User, hospital: Hospital, role: str) -> None:
        membership, _ = Membership.objects.get_or_create(user=user, hospital=hospital, role=role)
        if not membership.is_active:
            membership.is_active = True
            membership.save(update_fields=["is_active"])

    @transaction.atomic
    def _seed_people(self, spec: DemoHospital, hospital: Hospital, logins: list[tuple[str, str, str, bool]]) -> None:
        admin = self._user(spec.email("admin"), spec.admin)
        self._member(admin, hospital, Role.HOSPITAL_ADMIN)
        if not admin.is_staff:  # staff, so they can try the Django admin (scoped to their hospital)
            admin.is_staff = True
            admin.save(update_fields=["is_staff"])
        logins.append(("Hospital admin", f"{spec.name} (also /admin/)", admin.email, True))

        doctors = []
        for local, full_name in spec.doctors:
            doctor = self._user(spec.email(local), full_name)
            self._member(doctor, hospital, Role.DOCTOR)
            doctors.append(doctor)
            logins.append(("Doctor", spec.name, doctor.email, hospital.require_doctor_2fa))

        for i, p in enumerate(spec.patients):
            user = self._user(p.email, f"{p.given} {p.family}")
            self._member(user, hospital, Role.PATIENT)
            mrn = f"{spec.mrn_prefix}-{1001 + i}"
            patient = Patient.objects.filter(hospital=hospital, mrn=mrn).first()
            if patient is None:
                patient = services.create_patient(
                    hospital,
                    actor=admin,
                    mrn=mrn,
                    given_name=p.given,
                    family_name=p.family,
                    birth_date=p.birth,
                    sex=p.sex,
                    user=user,
                )
            # Two patients per doctor: patients 0-1 with the first doctor, 2-3 with the second.
            services.assign_doctor(patient, doctors[i * len(doctors) // len(spec.patients)], actor=admin)
            logins.append(("Patient", spec.name, user.email, False))

    # --- studies ----------------------------------------------------------------------------
    def _seed_studies(self, spec: DemoHospital, hospital: Hospital, root: Path, number: int) -> None:
        if Study.objects.filter(hospital=hospital).exists():
            return
        patients = list(
            Patient.objects.filter(hospital=hospital, mrn__startswith=f"{spec.mrn_prefix}-").order_by("mrn")
        )
        for patient, (task, label) in zip(patients, STUDY_PLAN, strict=False):
            found = dataset_image(root, task, label, index=number)
            if found is None:
                self.stdout.write(self.style.WARNING(f"  {spec.name}: no {task}/{label} image in {root}"))
                continue
            data, filename = found
            doctor = patient.care_assignments.select_related("doctor").first()
            uploader = doctor.doctor if doctor else None
            try:
                upload = validate_image_bytes(data)
                study = services.submit_study(patient, upload, original_filename=filename, actor=uploader)
            except Exception as exc:  # noqa: BLE001 - one bad demo study must not stop the seeding
                self.stdout.write(self.style.WARNING(f"  {spec.name}: study for {patient.mrn} not created: {exc}"))
                continue
            study.refresh_from_db()
            note = f" — {study.status_message}" if study.status_message else ""
            status = study.get_status_display()
            self.stdout.write(f"  {spec.name}: study #{study.pk} for {patient.full_name} ({filename}): {status}{note}")
            if patient == patients[0] and uploader is not None:
                self._seed_signed_report(spec, study, label, uploader)

    def _seed_signed_report(self, spec: DemoHospital, study: Study, label: str, doctor: User) -> None:
        """The first patient's study is read, reported, signed and discussed, so that the patient
        portal shows a real signed report (and its PDF) and a conversation from the first login.
        Only when the AI read is already there (always in the embedded mode, where tasks run
        inline; with workers it may still be queued, and then this is skipped)."""
        from apps.chat.services import send_message, start_conversation
        from apps.diagnosis.services import correct_diagnosis, latest_diagnosis
        from apps.reports.services import save_draft, sign_report, start_report

        if label not in DEMO_REPORTS:
            return
        diagnosis = latest_diagnosis(study)
        if diagnosis is None or diagnosis.refused or label not in (diagnosis.probabilities or {}):
            self.stdout.write(f"  {spec.name}: no AI read yet for study #{study.pk}, so no demo report was signed")
            return
        findings, impression = DEMO_REPORTS[label]
        # The doctor's read is the dataset's label: a confirmation or a correction of the AI.
        correct_diagnosis(diagnosis, doctor, label, comment="Read by the demo doctor.")
        report = start_report(study, doctor)
        save_draft(report, doctor, findings=findings, impression=impression, final_label=label)
        sign_report(report, doctor)
        conversation = start_conversation(study.patient, doctor, actor=doctor)
        send_message(
            conversation,
            doctor,
            f"Hello {study.patient.given_name}, your imaging report is signed and ready to read in the portal. "
            "Message me here if you have any questions.",
        )
        self.stdout.write(f"  {spec.name}: report on study #{study.pk} signed by {doctor.full_name}")

    # --- output -----------------------------------------------------------------------------
    def _print_logins(self, logins: list[tuple[str, str, str, bool]], use_datasets: bool, root: Path) -> None:
        source = f"images from {root}" if use_datasets else "the sample images shipped in apps/studies/demo_images"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo data ready ({source})."))
        self.stdout.write(f"Every demo account's password: {DEMO_PASSWORD}")
        self.stdout.write(
            "Accounts marked * sign in with a second step: at the first login they set up an authenticator "
            "app (Google Authenticator, FreeOTP, ...) by scanning the QR code the page shows, or by typing its key."
        )
        self.stdout.write("")
        width_role = max(len(r) for r, _, _, _ in logins)
        width_where = max(len(w) for _, w, _, _ in logins)
        self.stdout.write(f"  {'Role':<{width_role}}  {'Hospital':<{width_where}}  E-mail")
        self.stdout.write(f"  {'-' * width_role}  {'-' * width_where}  {'-' * 40}")
        for role, where, email, second_step in logins:
            mark = " *" if second_step else ""
            self.stdout.write(f"  {role:<{width_role}}  {where:<{width_where}}  {email}{mark}")
        self.stdout.write("")
