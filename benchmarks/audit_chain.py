"""What the audit trail's hash chain costs: one event written by one writer and by eight at once,
against a plain unchained insert of the same row, and how fast ``verify_audit`` walks the chain.

Every ``audit.record`` locks the chain head, inserts, reads the event back and moves the head (four
queries, in the caller's transaction), so audit writes are serialised platform-wide; this measures
what that means per event and in throughput. PostgreSQL only (SQLite serialises writers anyway):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_audit .venv/bin/python benchmarks/audit_chain.py

The database is created if missing and migrated; its audit events are added to, never removed
(the trigger forbids it; drop the database to start again). Writes the "audit" section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from urllib.parse import urlparse

from _common import machine, write_section

PLAIN = "bench_audit_plain"


def ensure_database(database_url: str) -> None:
    import psycopg2

    parsed = urlparse(database_url)
    admin = psycopg2.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [parsed.path.lstrip("/")])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{parsed.path.lstrip("/")}"')
    admin.close()


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagemedix.settings")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def writers(threads: int, per_thread: int, write) -> tuple[float, list[float]]:
    """Run ``write(i)`` ``per_thread`` times in each of ``threads`` threads started together;
    returns (wall seconds, per-call milliseconds)."""
    from django.db import connections

    start = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def run(index: int) -> None:
        start.wait()
        for i in range(per_thread):
            t0 = time.perf_counter()
            write(i)
            latencies[index].append((time.perf_counter() - t0) * 1000)
        connections.close_all()

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in pool:
        thread.join()
    return time.perf_counter() - t0, [ms for per in latencies for ms in per]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events per configuration")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database (created if missing).")
    ensure_database(database_url)
    setup()

    from django.db import connection
    from django.utils import timezone
    from django_scopes import scopes_disabled

    from apps.accounts import audit, auditchain
    from apps.accounts.models import AuditEvent, Hospital, User

    with scopes_disabled():
        hospital, _ = Hospital.objects.get_or_create(slug="bench-audit", defaults={"name": "Bench"})
        user = User.objects.filter(email="bench-audit@example.org").first() or User.objects.create_user(
            "bench-audit@example.org", full_name="Bench Writer"
        )

    def chained(i: int) -> None:
        audit.record("patient.view", hospital=hospital, actor=user, ip="203.0.113.7", n=i)

    # The baseline: the same row, one INSERT into a copy of the table (same columns, defaults and
    # indexes; no trigger, no chain), which is what an audit write cost before the chain.
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {PLAIN} (LIKE accounts_auditevent INCLUDING ALL)")
    insert = (
        f"INSERT INTO {PLAIN} (hospital_id, actor_id, actor_email, actor_name, action, object_type, object_id,"  # noqa: S608
        " object_repr, detail, ip_address, created_at, prev_hash) VALUES (%s, %s, %s, %s, %s, '', '', '', %s, %s, %s, %s)"
    )

    def unchained(i: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                insert,
                [
                    hospital.pk,
                    user.pk,
                    user.email,
                    user.full_name,
                    "patient.view",
                    json.dumps({"n": i}),
                    "203.0.113.7",
                    timezone.now(),
                    "-" * 64,
                ],
            )

    rows = []
    for name, write, threads in [
        ("plain insert, no chain (baseline)", unchained, 1),
        ("`audit.record`, 1 writer", chained, 1),
        ("plain insert, no chain (baseline)", unchained, 8),
        ("`audit.record`, 8 writers at once", chained, 8),
    ]:
        wall, ms = writers(threads, args.events // threads, write)
        count = len(ms)
        p95 = statistics.quantiles(ms, n=20)[18]
        rows.append(f"| {name} | {threads} | {count} | {statistics.median(ms):.2f} | {p95:.2f} | {count / wall:,.0f} |")
        print(rows[-1], flush=True)

    with scopes_disabled():
        total = AuditEvent._base_manager.count()
    t0 = time.perf_counter()
    verdict = auditchain.verify()
    seconds = time.perf_counter() - t0
    print(verdict, flush=True)
    verify_line = (
        f"`verify_audit` read {total:,} events in {seconds:.2f} s ({total / seconds:,.0f} events/s); "
        f"verdict: {'intact' if verdict.ok else verdict.problem}."
    )

    load = os.getloadavg()[0]
    body = f"""## Audit trail hash chain (`benchmarks/audit_chain.py`)

Machine: {machine()}; PostgreSQL on the same machine, shared with other work (load average
{load:.1f} when the run ended; figures are noisy: compare the rows of one run). Each writer is a thread with its own connection, writing in autocommit
(one transaction per event). An `audit.record` event is four queries (lock the chain head, insert,
read back, move the head); the baseline is one INSERT of the same row.

| write | writers | events | median ms | p95 ms | events/s |
|---|---|---|---|---|---|
{chr(10).join(rows)}

With the chain, eight writers together write no faster than one: every audit write waits for the
chain head, held from its UPDATE to the commit. Writers of other rows are not held up.

{verify_line} The walk recomputes every SHA-256 over the event as stored; it reads the table in
chunks of 2,000 rows and keeps no more in memory.
"""
    write_section("audit", body)


if __name__ == "__main__":
    main()
