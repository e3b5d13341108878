"""Load test: one hospital with 2,000 patients and 10,000 studies, 50 simulated doctors and patients,
the web (daphne) and the Celery worker(s) on this machine, production settings.

    .venv/bin/python -m pip install -r benchmarks/requirements.txt   # locust, once
    .venv/bin/python benchmarks/load_test.py                      # 1 worker, 50 users, 3 minutes
    .venv/bin/python benchmarks/load_test.py --workers 2          # two workers consuming one queue
    .venv/bin/python benchmarks/load_test.py --web 2              # two daphne processes, one socket

It seeds (or reuses) the hospital in its own PostgreSQL database (``bench_load`` by default), starts
``--web`` daphne processes (sharing one listening socket) with ``DJANGO_DEBUG=0`` and ``--workers`` Celery workers on a queue of this run only, and runs
``benchmarks/locustfile.py`` headless: doctors open the caseload, the API study list, study and review
pages, and upload real chest X-rays from ``../shared/datasets/chest_xray/test`` through the API;
patients open their reports page. Then it waits until every upload of the run has finished and
checks that each has exactly one stored AI read, and counts how many reads each worker ran (from
the workers' logs): a study read twice would show up as more reads than uploads.

Writes p50/p95/p99 per endpoint and the final state of every upload to the "load" section of
docs/BENCHMARKS.md (``--section`` to write the two-worker run beside it).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

from _common import DATASETS, ROOT, machine, write_section
from login_burst import ensure_database

PY = sys.executable
PASSWORD = "load-test-password-1"  # noqa: S105 - the seeded accounts of a throwaway benchmark database
SLUG = "load"
TARGETS = {"caseload": 0.300, "api: study list": 0.400}


def environment(database_url: str, redis_url: str, queue: str, static_root: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_QUEUE=queue,
        CHANNELS_PREFIX=f"load-{queue}",
        DJANGO_SETTINGS_MODULE="benchmarks.settings_load",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="load-test-" + "y" * 50,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="0",
        FILE_ENCRYPTION_KEYS="load:" + "B" * 43 + "=",
        STATIC_ROOT=static_root,
        MALLOC_MMAP_THRESHOLD_="1048576",
        PYTHONPATH=str(ROOT),
    )
    return env


def seed(env: dict[str, str], patients: int, studies: int, doctors: int, patient_logins: int) -> None:
    subprocess.run(
        [PY, str(ROOT / "benchmarks" / "load_seed.py"), str(patients), str(studies), str(doctors), str(patient_logins)],
        env={**env, "LOAD_SLUG": SLUG, "LOAD_PASSWORD": PASSWORD},
        cwd=ROOT,
        check=True,
    )


def wait_until_serving(webs: list[subprocess.Popen], logs: list[Path], seconds: float = 120) -> None:
    """The shared socket accepts connections before any daphne does, so wait for each process to
    say it listens (daphne logs "Listening on" once Django is set up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(web.poll() is not None for web in webs):
            raise RuntimeError("a daphne process exited before it listened")
        if all("Listening on" in log.read_text() for log in logs):
            return
        time.sleep(0.3)
    raise RuntimeError("daphne did not listen in time")


def finished_uploads(env: dict[str, str], since: dt.datetime, bound_s: float) -> dict[str, object]:
    """Wait until every study uploaded since ``since`` has finished; return their final states."""
    out = subprocess.run(
        [PY, str(ROOT / "benchmarks" / "load_seed.py"), "--report", since.isoformat(), str(bound_s)],
        env={**env, "LOAD_SLUG": SLUG, "LOAD_PASSWORD": PASSWORD},
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    fields: dict[str, object] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


def percentiles(stats_csv: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The per-endpoint rows and the "Aggregated" row of locust's stats CSV."""
    with stats_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    endpoints = [row for row in rows if row["Name"] != "Aggregated"]
    return endpoints, next(row for row in rows if row["Name"] == "Aggregated")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=5)
    parser.add_argument("--duration", default="180s")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--web", type=int, default=1, help="daphne processes sharing one listening socket")
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--studies", type=int, default=10000)
    parser.add_argument("--doctors", type=int, default=40)
    parser.add_argument("--patient-logins", type=int, default=100)
    parser.add_argument("--settle", type=float, default=600, help="seconds to wait for the last uploads to finish")
    parser.add_argument("--section", default="load", help="docs/BENCHMARKS.md section to write")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    database_url = os.environ.get("LOAD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_load")
    redis_url = os.environ.get("LOAD_REDIS_URL", "redis://127.0.0.1:6379/11")
    uploads = DATASETS / "chest_xray" / "test" / "normal"
    if not uploads.is_dir():
        print(f"no real images to upload: {uploads} is missing", file=sys.stderr)
        return 1
    ensure_database(database_url)
    queue = f"load-{uuid.uuid4().hex[:8]}"
    static_root = tempfile.mkdtemp(prefix="load-static-")
    logs = Path(tempfile.mkdtemp(prefix="load-logs-"))
    env = environment(database_url, redis_url, queue, static_root)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
    subprocess.run([PY, "manage.py", "collectstatic", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
    seed(env, args.patients, args.studies, args.doctors, args.patient_logins)

    # One listening socket shared by every daphne process (each accepts from it, as under systemd
    # socket activation), so --web 2 puts both cores to work for the web without a proxy.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    processes: list[subprocess.Popen] = []
    try:
        for n in range(args.web):
            processes.append(
                subprocess.Popen(
                    [PY, "-m", "daphne", "--fd", str(listener.fileno()), "imagemedix.asgi:application"],
                    env=env,
                    cwd=ROOT,
                    pass_fds=(listener.fileno(),),
                    stdout=subprocess.DEVNULL,
                    stderr=(logs / f"daphne{n}.log").open("w"),
                )
            )
        webs = list(processes)
        for n in range(args.workers):
            processes.append(
                subprocess.Popen(
                    [
                        str(Path(PY).with_name("celery")),
                        "-A",
                        "imagemedix",
                        "worker",
                        "--pool=prefork",
                        "--concurrency=1",
                        "-Q",
                        queue,
                        "-n",
                        f"load{n}@%h",
                        "--loglevel=INFO",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=(logs / f"worker{n}.log").open("w"),
                )
            )
        wait_until_serving(webs, [logs / f"daphne{n}.log" for n in range(args.web)])
        for _ in range(4 * args.web):  # a process's first requests import views and compile templates
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=60).read()
        # How busy the machine was: a run beside other work measures that work too.
        busy_before, total_before = cpu_ticks()
        started = dt.datetime.now(dt.UTC)
        csv_prefix = logs / "locust"
        subprocess.run(
            [
                str(Path(PY).with_name("locust")),
                "-f",
                str(ROOT / "benchmarks" / "locustfile.py"),
                "--headless",
                "-u",
                str(args.users),
                "-r",
                str(args.spawn_rate),
                "-t",
                args.duration,
                "--host",
                f"http://127.0.0.1:{port}",
                "--csv",
                str(csv_prefix),
                "--only-summary",
            ],
            env={
                **env,
                "LOAD_SLUG": SLUG,
                "LOAD_PASSWORD": PASSWORD,
                "LOAD_DOCTORS": str(args.doctors),
                "LOAD_PATIENTS": str(args.patient_logins),
                "LOAD_UPLOADS": str(uploads),
            },
            cwd=ROOT,
            check=False,
        )
        busy_after, total_after = cpu_ticks()
        final = finished_uploads(env, started, args.settle)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        listener.close()

    reads = Counter()
    for n in range(args.workers):
        text = (logs / f"worker{n}.log").read_text()
        reads[f"worker {n}"] = len(re.findall(r"diagnosis\.diagnose_study\[[^\]]+\] succeeded", text))
    rows, overall = percentiles(csv_prefix.with_name("locust_stats.csv"))
    busy = 100 * (busy_after - busy_before) / max(1, total_after - total_before)
    table = [
        "| endpoint | requests | failures | p50 (ms) | p95 (ms) | p99 (ms) | target p95 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        target = TARGETS.get(row["Name"])
        verdict = ""
        if target is not None:
            verdict = f"≤ {target * 1000:.0f} ms: " + ("met" if float(row["95%"]) <= target * 1000 else "**not met**")
        table.append(
            f"| {row['Name']} ({row['Type']}) | {row['Request Count']} | {row['Failure Count']} | {row['50%']} | "
            f"{row['95%']} | {row['99%']} | {verdict} |"
        )
    uploaded = int(str(final["uploads"]))
    body = "\n".join(
        [
            f"## Load: {args.users} users, {args.web} web process(es), {args.workers} worker(s) "
            f"(`benchmarks/load_test.py --web {args.web} --workers {args.workers}"
            + (f" --users {args.users}" if args.users != 50 else "")
            + "`)",
            "",
            f"Machine: {machine()}. {args.web} daphne process(es) sharing one listening socket and {args.workers} "
            "Celery worker(s) (prefork, concurrency 1) "
            f"on this machine with PostgreSQL and Redis; `DJANGO_DEBUG=0`. Hospital: {args.patients:,} patients, "
            f"{args.studies:,} seeded studies, {args.doctors} doctors. {args.users} users (4 doctors : 1 patient), "
            f"spawned at {args.spawn_rate:g}/s, for {args.duration}; doctors upload real chest X-rays "
            "(`chest_xray/test/normal`) through the API. "
            f"Served {float(overall['Requests/s']):.1f} requests/s; the machine's CPUs were {busy:.0f} % busy during "
            "the run (web, workers, PostgreSQL, Redis and locust itself, and anything else running).",
            "",
            *table,
            "",
            f"Uploads during the run: {uploaded}; finished: {final['finished']} "
            f"({final['states']}); with exactly one AI read: {final['exactly_one']}; "
            f"still unfinished after {args.settle:.0f} s: {final['unfinished']}; last one finished "
            f"{final['settle_s']} s after the run. Reads per worker (from the workers' logs): "
            + ", ".join(f"{k}: {v}" for k, v in sorted(reads.items()))
            + f" (total {sum(reads.values())} for {uploaded} uploads).",
        ]
    )
    print(body)
    if not args.no_write:
        write_section(args.section, body)
    ok = final["unfinished"] == "0" and final["exactly_one"] == str(uploaded) and sum(reads.values()) == uploaded
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
