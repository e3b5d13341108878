"""The load test's data, run by ``benchmarks/load_test.py`` in the server's environment.

    load_seed.py PATIENTS STUDIES DOCTORS PATIENT_LOGINS     seed the hospital (once; reused after)
    load_seed.py --report SINCE BOUND_S                      wait for the run's uploads, print their states

Seeding writes rows in bulk (one password hash for every account, studies whose AI read is already
stored) so that 10,000 studies take seconds; the pages and lists read them as they read any study.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import time
from collections import Counter

import django

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db.models import Count  # noqa: E402
from django_scopes import scopes_disabled  # noqa: E402

from apps.accounts.models import Hospital, Membership, Role, User  # noqa: E402
from apps.diagnosis.models import Diagnosis, ModelVersion  # noqa: E402
from apps.studies.models import FINISHED_STATUSES, CareAssignment, Modality, Patient, Study, StudyStatus  # noqa: E402

SLUG = os.environ["LOAD_SLUG"]
LABELS = {"normal": 0.6, "bacterial_pneumonia": 0.25, "viral_pneumonia": 0.15}


def seed(patients: int, studies: int, doctors: int, patient_logins: int) -> None:
    hospital, _ = Hospital.objects.get_or_create(slug=SLUG, defaults={"name": "Load Test General"})
    if Study.objects.filter(hospital=hospital).count() >= studies:
        print(f"reusing {SLUG}: {Study.objects.filter(hospital=hospital).count()} studies")
        return
    password = make_password(os.environ["LOAD_PASSWORD"])
    rng = random.Random(0)
    doctor_users = User.objects.bulk_create(
        [User(email=f"doctor{i}@load.example", full_name=f"Dr Load {i}", password=password) for i in range(doctors)]
    )
    patient_users = User.objects.bulk_create(
        [
            User(email=f"patient{i}@load.example", full_name=f"Patient {i}", password=password)
            for i in range(patient_logins)
        ]
    )
    Membership.objects.bulk_create(
        [Membership(user=u, hospital=hospital, role=Role.DOCTOR) for u in doctor_users]
        + [Membership(user=u, hospital=hospital, role=Role.PATIENT) for u in patient_users]
    )
    records = Patient.objects.bulk_create(
        [
            Patient(
                hospital=hospital,
                mrn=f"LD{i:06d}",
                given_name=f"Given{i}",
                family_name=f"Family{i % 397}",
                birth_date=dt.date(1940 + i % 70, 1 + i % 12, 1 + i % 28),
                user=patient_users[i] if i < len(patient_users) else None,
            )
            for i in range(patients)
        ]
    )
    CareAssignment.objects.bulk_create(
        [CareAssignment(hospital=hospital, patient=p, doctor=doctor_users[i % doctors]) for i, p in enumerate(records)]
    )
    rows = Study.objects.bulk_create(
        [
            Study(
                hospital=hospital,
                patient=records[i % patients],
                uploaded_by=doctor_users[(i % patients) % doctors],
                status=StudyStatus.DONE,
                modality=Modality.CHEST_XRAY,
                source_format="jpeg",
                original_filename=f"seed-{i}.jpeg",
                width=1024,
                height=1024,
                file_name=f"seed/{i}",
                file_sha256=f"{i:064x}",
                file_key_id="load",
                file_size=150_000,
            )
            for i in range(studies)
        ],
        batch_size=2000,
    )
    router = ModelVersion.objects.get(task="router", is_active=True)
    chest = ModelVersion.objects.get(task="chest", is_active=True)
    labels, weights = list(LABELS), list(LABELS.values())
    diagnoses = []
    for study in rows:
        label = rng.choices(labels, weights)[0]
        p = round(rng.uniform(0.7, 0.99), 3)
        rest = (1 - p) / 2
        diagnoses.append(
            Diagnosis(
                hospital=hospital,
                study=study,
                route=Modality.CHEST_XRAY,
                route_probabilities={"chest_xray": 0.99, "brain_mri": 0.005, "unsupported": 0.005},
                task="chest",
                label=label,
                probabilities={k: (p if k == label else rest) for k in labels},
                router_version=router,
                router_sha256=router.weights_sha256,
                specialist_version=chest,
                specialist_sha256=chest.weights_sha256,
                versions_key=f"{router.pk}:{chest.pk}",
            )
        )
    Diagnosis.objects.bulk_create(diagnoses, batch_size=2000)
    print(f"seeded {SLUG}: {patients} patients, {studies} studies, {doctors} doctors, {patient_logins} patient logins")


def report(since: dt.datetime, bound_s: float) -> None:
    started = time.monotonic()
    uploads = Study.objects.filter(hospital__slug=SLUG, created_at__gte=since, original_filename__startswith="load-")
    while uploads.exclude(status__in=FINISHED_STATUSES).exists() and time.monotonic() - started < bound_s:
        time.sleep(2)
    settle = time.monotonic() - started
    states = Counter(uploads.values_list("status", flat=True))
    reads = uploads.annotate(n=Count("diagnoses")).values_list("n", flat=True)
    print(f"uploads={uploads.count()}")
    print(f"finished={sum(n for s, n in states.items() if s in FINISHED_STATUSES)}")
    print(f"unfinished={sum(n for s, n in states.items() if s not in FINISHED_STATUSES)}")
    print("states=" + ", ".join(f"{s} {n}" for s, n in sorted(states.items())))
    print(f"exactly_one={sum(1 for n in reads if n == 1)}")
    print(f"settle_s={settle:.0f}")


if __name__ == "__main__":
    with scopes_disabled():
        if sys.argv[1] == "--report":
            report(dt.datetime.fromisoformat(sys.argv[2]), float(sys.argv[3]))
        else:
            seed(*(int(a) for a in sys.argv[1:5]))
