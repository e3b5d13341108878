"""The load test's data, run by ``benchmarks/load_test.py`` in the server's environment.

    load_seed.py PATIENTS STUDIES DOCTORS PATIENT_LOGINS     seed the hospital (once; reused after)
    load_seed.py --report SINCE BOUND_S                      wait for the run's uploads, print their states

Seeding writes rows in bulk (one password hash for every account; the caseload from
``benchmarks/_seed.py``, shared with the worklist benchmark: AI reads and reports already stored) so
that 10,000 studies take seconds; the pages and lists read them as they read any study.
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

from _seed import seed_caseload  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db.models import Count  # noqa: E402
from django_scopes import scopes_disabled  # noqa: E402

from apps.accounts.models import Hospital, Membership, Role, User  # noqa: E402
from apps.studies.models import FINISHED_STATUSES, Study, StudyStatus  # noqa: E402

SLUG = os.environ["LOAD_SLUG"]


def seed(patients: int, studies: int, doctors: int, patient_logins: int) -> None:
    hospital, _ = Hospital.objects.get_or_create(slug=SLUG, defaults={"name": "Load Test General"})
    if Study.objects.filter(hospital=hospital).count() >= studies:
        print(f"reusing {SLUG}: {Study.objects.filter(hospital=hospital).count()} studies")
        return
    password = make_password(os.environ["LOAD_PASSWORD"])
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
    # Only finished states: a queued seeded study has no file for the watchdog to re-send.
    statuses = [StudyStatus.DONE] * 85 + [StudyStatus.UNSURE] * 8 + [StudyStatus.REFUSED] * 5 + [StudyStatus.FAILED] * 2
    written, reports = seed_caseload(
        hospital,
        doctor_users,
        patients=patients,
        studies=studies,
        statuses=statuses,
        mrn_prefix="LD",
        patient_users=patient_users,
        rng=random.Random(0),
    )
    print(
        f"seeded {SLUG}: {patients} patients, {written} studies ({reports} reports), {doctors} doctors, "
        f"{patient_logins} patient logins"
    )


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
