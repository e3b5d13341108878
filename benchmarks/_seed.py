"""Bulk seeding of a hospital's caseload for the benchmarks (``worklist.py``, ``load_seed.py``); needs
Django set up. Rows are written in bulk so that 10,000 studies take seconds, and the pages and lists
read them as they read any study: AI reads stored for the finished studies, reports in every state
for some, a few entered in error, studies spread over the past months."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from apps.accounts.models import Hospital, User
from apps.diagnosis.models import Diagnosis, ModelVersion
from apps.reports.models import Report, ReportStatus
from apps.studies.models import CareAssignment, Modality, Patient, Study, StudyStatus

CHEST_LABELS = ["normal", "bacterial_pneumonia", "viral_pneumonia"]
READ_STATUSES = (StudyStatus.DONE, StudyStatus.UNSURE, StudyStatus.REFUSED)


def seed_caseload(
    hospital: Hospital,
    doctors: Sequence[User],
    *,
    patients: int,
    studies: int,
    statuses: Sequence[str],
    mrn_prefix: str,
    patient_users: Sequence[User] = (),
    rng: random.Random,
) -> tuple[int, int]:
    """Patients (the first ones linked to ``patient_users``) cared for by ``doctors`` in turn, and
    ``studies`` chest X-rays and brain MRIs between them, 37 minutes apart, newest first, each with a
    status drawn from ``statuses``; AI reads for the read statuses; reports (draft or signed) for
    about 60 % of the studies that are not queued. Gathers planner statistics as autovacuum would.
    Returns (studies, reports) written."""
    records = Patient.objects.bulk_create(
        [
            Patient(
                hospital=hospital,
                mrn=f"{mrn_prefix}{i:06d}",
                given_name=f"Given{i}",
                family_name=f"Family{i % 397}",
                birth_date=dt.date(1940 + i % 70, 1 + i % 12, 1 + i % 28),
                user=patient_users[i] if i < len(patient_users) else None,
            )
            for i in range(patients)
        ]
    )
    doctor_of = {p.pk: doctors[i % len(doctors)] for i, p in enumerate(records)}
    CareAssignment.objects.bulk_create(
        [CareAssignment(hospital=hospital, patient=p, doctor=doctor_of[p.pk]) for p in records]
    )
    now = timezone.now()
    rows = Study.objects.bulk_create(
        [
            Study(
                hospital=hospital,
                patient=records[i % patients],
                uploaded_by=doctor_of[records[i % patients].pk],
                created_at=now - dt.timedelta(minutes=37 * i),
                status=rng.choice(statuses),
                modality=rng.choice([Modality.CHEST_XRAY, Modality.BRAIN_MRI]),
                source_format="jpeg",
                original_filename=f"seed-{i}.jpeg",
                width=1024,
                height=1024,
                file_name=f"seed/{i}",
                file_sha256=f"{i:064x}",
                file_key_id="seed",
                file_size=150_000,
                entered_in_error_at=now if i % 500 == 0 else None,
            )
            for i in range(studies)
        ],
        batch_size=2000,
    )
    router = ModelVersion.objects.get(task="router", is_active=True)
    chest = ModelVersion.objects.get(task="chest", is_active=True)
    diagnoses = []
    for s in rows:
        if s.status not in READ_STATUSES:
            continue
        label = rng.choice(CHEST_LABELS)
        p = round(rng.uniform(0.7, 0.99), 3)
        diagnoses.append(
            Diagnosis(
                hospital=hospital,
                study=s,
                route=Modality.CHEST_XRAY,
                route_probabilities={"chest_xray": 0.99, "brain_mri": 0.005, "unsupported": 0.005},
                refused=s.status == StudyStatus.REFUSED,
                indeterminate=s.status == StudyStatus.UNSURE,
                task="chest",
                label=label,
                probabilities={k: (p if k == label else round((1 - p) / 2, 3)) for k in CHEST_LABELS},
                router_version=router,
                router_sha256=router.weights_sha256,
                specialist_version=chest,
                specialist_sha256=chest.weights_sha256,
                versions_key=f"{router.pk}:{chest.pk}",
            )
        )
    Diagnosis.objects.bulk_create(diagnoses, batch_size=2000)
    reports = []
    for s in rows:
        roll = rng.random()
        if s.status == StudyStatus.QUEUED or roll > 0.6:
            continue
        status = ReportStatus.DRAFT if roll < 0.1 else ReportStatus.SIGNED
        author = doctor_of[s.patient_id]
        reports.append(
            Report(
                hospital=hospital,
                study=s,
                patient_id=s.patient_id,
                author=author,
                status=status,
                impression="Seeded report.",
                final_label="normal",
                signed_by=author if status == ReportStatus.SIGNED else None,
                signed_at=now if status == ReportStatus.SIGNED else None,
            )
        )
    Report.objects.bulk_create(reports, batch_size=2000)
    with connection.cursor() as cursor:  # planner statistics, as autovacuum gathers them in a live database
        cursor.execute("ANALYZE")
    return len(rows), len(reports)
