"""The worklist with 10,000 studies: time and queries of one page, for the orders and filters a
doctor uses, on PostgreSQL.

One hospital, one doctor caring for 2,000 patients with 10,000 studies between them (written in
bulk: AI reads stored for most, reports in every state for some, a few entered in error). Each
case renders the real page (``reports:worklist``) through Django's test client as that doctor and
records the wall time (median of ``--repeat`` runs after one warm-up) and the number of SQL
queries; the query count must not depend on the number of studies (tests/reports/test_worklist.py
checks that on a small table).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_worklist .venv/bin/python benchmarks/worklist.py

The database is created if missing and reseeded when its hospital is absent. Writes the
"worklist" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagemedix.settings")

SLUG = "bench-worklist"
CASES = {
    "newest first (default)": {},
    "AI-suspected findings first": {"sort": "triage"},
    "state: AI ready – needs report": {"state": "needs_report"},
    "state: signed, by patient name": {"state": "signed", "sort": "patient"},
    "image type + doctor + last 30 days": {"modality": "chest_xray", "doctor": "<doctor>", "uploaded_from": "<30d>"},
    "page 200": {"page": "200"},
}


def ensure_database(database_url: str) -> None:
    import psycopg2

    url = urlparse(database_url)
    conn = psycopg2.connect(
        host=url.hostname, port=url.port or 5432, user=url.username or "postgres", dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [url.path.lstrip("/")])
        if not cur.fetchone():
            cur.execute(f'CREATE DATABASE "{url.path.lstrip("/")}"')
    conn.close()


def seed(studies: int, patients: int) -> None:
    from _seed import seed_caseload

    from apps.accounts.models import Hospital, Membership, Role, User
    from apps.studies.models import StudyStatus

    if Hospital.objects.filter(slug=SLUG).exists():
        return
    hospital = Hospital.objects.create(slug=SLUG, name="Worklist Bench General")
    doctor = User.objects.create(email="doctor@worklist.bench", full_name="Dr Bench")
    Membership.objects.create(user=doctor, hospital=hospital, role=Role.DOCTOR)
    statuses = [StudyStatus.DONE] * 80 + [StudyStatus.UNSURE] * 8 + [StudyStatus.REFUSED] * 5
    statuses += [StudyStatus.FAILED] * 2 + [StudyStatus.QUEUED] * 5
    written, reports = seed_caseload(
        hospital,
        [doctor],
        patients=patients,
        studies=studies,
        statuses=statuses,
        mrn_prefix="WB",
        rng=random.Random(0),
    )
    print(f"seeded {written} studies, {reports} reports", file=sys.stderr)


def run(repeat: int) -> list[tuple[str, float, int, int]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse
    from django.utils import timezone

    from apps.accounts.models import User

    doctor = User.objects.get(email="doctor@worklist.bench")
    client = Client()
    client.force_login(doctor)
    url = reverse("reports:worklist", args=[SLUG])
    since = str(timezone.localdate() - dt.timedelta(days=30))
    results = []
    for name, params in CASES.items():
        params = {k: v.replace("<doctor>", str(doctor.pk)).replace("<30d>", since) for k, v in params.items()}
        client.get(url, params)  # warm-up
        times = []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url, params)
                times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (name, response.status_code)
        rows = response.content.count(b"data-reporting-state=")
        results.append((name, statistics.median(times), len(queries.captured_queries), rows))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is created if missing).")
    ensure_database(database_url)
    os.environ.setdefault("DJANGO_DEBUG", "1")

    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment
    from django_scopes import scopes_disabled

    setup_test_environment()  # the test client's response context; ALLOWED_HOSTS has testserver
    call_command("migrate", verbosity=0)
    with scopes_disabled():
        seed(args.studies, args.patients)
    results = run(args.repeat)

    from _common import machine, write_section

    lines = [
        "## Worklist with 10,000 studies (`benchmarks/worklist.py`)",
        "",
        f"One doctor caring for {args.patients:,} patients with {args.studies:,} studies (AI reads, reports "
        "in every state, some entered in error), PostgreSQL on the same machine; the whole page through "
        f"Django's test client, median of {args.repeat} runs. {machine()}.",
        "",
        "| case | ms per page | SQL queries | rows |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {ms:.0f} | {queries} | {rows} |" for name, ms, queries, rows in results]
    lines += [
        "",
        "The query count does not depend on the number of studies: the reporting state, the triage tier "
        "and the counts per state are computed in the database, in two queries (the page's rows; the "
        "counts per state, which also give the total), the rest is the session, the user and the "
        "hospital (and, with a doctor filter, that doctor). Filtering by state uses the state's rules as "
        "plain conditions (`worklist.in_state`), which PostgreSQL can estimate (a comparison with the CASE "
        "expression cannot be, and led it to a nested-loop plan over every patient).",
    ]
    write_section("worklist", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
