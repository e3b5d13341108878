"""Thirty simultaneous logins against one daphne process: peak memory and login latency.

Issue 9 found that Django's default Argon2 parameters (``memory_cost=102400`` KiB, ``parallelism=8``)
took one daphne process from 114 MB to 2.7 GB for thirty concurrent logins. This script measures the
shipped hasher (``imagemedix.hashers.BoundedArgon2PasswordHasher``: OWASP's ``m=19456, t=2, p=1`` and
at most ``PASSWORD_HASH_CONCURRENCY`` hashes at a time) side by side with Django's stock
``Argon2PasswordHasher``, in one run, on the same database, with production settings
(``DJANGO_DEBUG=0``, collected static files, PostgreSQL); and the shipped hasher once more without the
deployment's ``MALLOC_MMAP_THRESHOLD_`` (README, Deployment), to show what that setting is for.

For each configuration, and for each of ``--rounds`` rounds (alternating, so all see the same machine
load): a fresh daphne process starts, thirty users (whose passwords were hashed by that hasher) log in at
once through the real login form (GET for the CSRF token, then POST), and the script records each
login's wall time and the server's resident memory (sampled every 20 ms from /proc, plus the kernel's
high-water mark VmHWM).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_login .venv/bin/python benchmarks/login_burst.py

The database is created if missing and its users are replaced. Writes the "login" section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlparse

from _common import ROOT, machine, write_section

PY = sys.executable
# glibc raises its mmap threshold after the first large free, so each hashing thread's 19 MiB block
# then stays in that thread's malloc arena: RSS grows with the number of request threads. A fixed
# threshold (the deployment setting in the README) returns each block to the system when freed.
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1048576"}
# name -> (settings module whose PASSWORD_HASHERS hash the users and run the server, extra environment)
CONFIGS = {
    "shipped hasher, deployment env (`MALLOC_MMAP_THRESHOLD_`)": ("imagemedix.settings", MALLOC),
    "shipped hasher, glibc defaults": ("imagemedix.settings", {}),
    "Django default Argon2 (m=102400 t=2 p=8), uncapped": ("benchmarks.settings_stock_argon2", MALLOC),
}
PASSWORD = "correct horse battery staple 42"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(database_url: str, static_root: str, settings_module: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="benchmark-" + "x" * 50,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="0",
        FILE_ENCRYPTION_KEYS="bench:" + "A" * 43 + "=",
        STATIC_ROOT=static_root,
        DJANGO_SETTINGS_MODULE=settings_module,
    )
    env.pop("REDIS_URL", None)
    return env


def ensure_database(database_url: str) -> None:
    import psycopg2

    url = urlparse(database_url)
    name = url.path.lstrip("/")
    conn = psycopg2.connect(
        host=url.hostname, port=url.port or 5432, user=url.username or "postgres", dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if not cur.fetchone():
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


SEED = """
import django, os, sys
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher
hasher = get_hasher("default")
User = get_user_model()
prefix, n = sys.argv[1], int(sys.argv[2])
User.objects.filter(email__startswith=prefix).delete()
encoded = hasher.encode(os.environ["BENCHMARK_PASSWORD"], hasher.salt())
User.objects.bulk_create([User(email=f"{prefix}{i}@bench.example", password=encoded) for i in range(n)])
"""


def seed_users(env: dict[str, str], prefix: str, n: int) -> None:
    subprocess.run([PY, "-c", SEED, prefix, str(n)], env={**env, "BENCHMARK_PASSWORD": PASSWORD}, cwd=ROOT, check=True)


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def login(port: int, email: str) -> float:
    """One login through the form; returns seconds from the first request to the redirect."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Host": "127.0.0.1", "X-Forwarded-Proto": "https"}
    conn.request("GET", "/accounts/login/", headers=headers)
    page = conn.getresponse()
    body = page.read().decode()
    cookies = [c.split(";", 1)[0] for c in page.headers.get_all("Set-Cookie") or []]
    token = CSRF_INPUT.search(body)
    if page.status != 200 or not token:
        raise RuntimeError(f"login page: HTTP {page.status}")
    form = urlencode({"csrfmiddlewaretoken": token.group(1), "username": email, "password": PASSWORD})
    conn.request(
        "POST",
        "/accounts/login/",
        body=form,
        headers={
            **headers,
            "Cookie": "; ".join(cookies),
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://127.0.0.1",
            "Referer": "https://127.0.0.1/accounts/login/",
        },
    )
    answer = conn.getresponse()
    answer.read()
    conn.close()
    if answer.status != 302:
        raise RuntimeError(f"login of {email}: HTTP {answer.status}, expected a redirect")
    return time.perf_counter() - start


def burst(env: dict[str, str], prefix: str, n: int) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(
        [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "imagemedix.asgi:application"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("daphne did not start") from None
                time.sleep(0.2)
        login(port, f"{prefix}0@bench.example")  # warm up: imports, first DB connection, templates
        before = rss_kib(server.pid, "VmRSS")
        peak = [before]
        threads = [rss_kib(server.pid, "Threads")]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(server.pid, "VmRSS"))
                threads[0] = max(threads[0], rss_kib(server.pid, "Threads"))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        wall = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n) as pool:
            times = list(pool.map(lambda i: login(port, f"{prefix}{i}@bench.example"), range(n)))
        wall = time.perf_counter() - wall
        done.set()
        sampler.join()
        hwm = rss_kib(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=30)
    times.sort()
    return {
        "rss_before_mb": before / 1024,
        "rss_peak_mb": max(peak[0], hwm) / 1024,
        "p50_s": statistics.median(times),
        "p95_s": times[max(0, int(round(0.95 * len(times))) - 1)],
        "max_s": times[-1],
        "wall_s": wall,
        "threads": threads[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/bench_login"
    ensure_database(database_url)
    static_root = tempfile.mkdtemp(prefix="bench-static-")
    base = server_env(database_url, static_root, "imagemedix.settings", {})
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], env=base, cwd=ROOT, check=True)
    subprocess.run([PY, "manage.py", "collectstatic", "--noinput", "-v0"], env=base, cwd=ROOT, check=True)

    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    for rnd in range(args.rounds):
        for i, (name, (settings_module, extra)) in enumerate(CONFIGS.items()):
            env = server_env(database_url, static_root, settings_module, extra)
            prefix = f"burst{i}-"
            seed_users(env, prefix, args.logins)
            r = burst(env, prefix, args.logins)
            results[name].append(r)
            print(f"round {rnd + 1} {name}: " + ", ".join(f"{k}={v:.2f}" for k, v in r.items()), flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    names = list(CONFIGS)
    rows = [
        "| configuration | RSS before (MB) | peak RSS (MB) | threads | login p50 (s) | login p95 (s) | all done (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        rows.append(
            f"| {name} | {med(name, 'rss_before_mb'):.0f} | {med(name, 'rss_peak_mb'):.0f} | "
            f"{med(name, 'threads'):.0f} | {med(name, 'p50_s'):.2f} | {med(name, 'p95_s'):.2f} | {med(name, 'wall_s'):.2f} |"
        )
    shipped, _, stock = names
    growth = (med(stock, "rss_peak_mb") - med(stock, "rss_before_mb")) / max(
        1.0, med(shipped, "rss_peak_mb") - med(shipped, "rss_before_mb")
    )
    body = "\n".join(
        [
            f"## {args.logins} concurrent logins (`benchmarks/login_burst.py`)",
            "",
            f"Machine: {machine()}. One daphne process, `DJANGO_DEBUG=0`, PostgreSQL, "
            f"`PASSWORD_HASH_CONCURRENCY={os.environ.get('PASSWORD_HASH_CONCURRENCY', '2')}`; "
            f"{args.logins} users log in at once through the login form (GET + POST). "
            f"Medians over {args.rounds} rounds, the configurations alternating in one run.",
            "",
            *rows,
            "",
            f"Memory growth during the burst, stock over shipped: {growth:.1f}x. "
            f"Login p50, stock over shipped: {med(stock, 'p50_s') / med(shipped, 'p50_s'):.2f}x.",
        ]
    )
    print(body)
    if not args.no_write:
        write_section("login", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
