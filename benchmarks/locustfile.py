"""Locust scenario for ``benchmarks/load_test.py``: doctors and patients of one hospital browsing,
and doctors uploading real chest X-rays through the API.

Run it through ``load_test.py``, which seeds the hospital, starts daphne and the Celery workers,
and passes these settings in the environment:

``LOAD_SLUG``           the hospital's slug
``LOAD_PASSWORD``       every seeded account's password
``LOAD_DOCTORS``        how many doctors were seeded (doctor0@load.example …)
``LOAD_PATIENTS``       how many patients with a login were seeded (patient0@load.example …)
``LOAD_UPLOADS``        a folder of real images to upload (``*.jpeg``), e.g. ``chest_xray/test/normal``
"""

from __future__ import annotations

import os
import random
import re
import threading
from itertools import count
from pathlib import Path

from locust import HttpUser, between, task

SLUG = os.environ["LOAD_SLUG"]
PASSWORD = os.environ["LOAD_PASSWORD"]
DOCTORS = int(os.environ["LOAD_DOCTORS"])
PATIENTS = int(os.environ["LOAD_PATIENTS"])
UPLOADS = sorted(p for p in Path(os.environ["LOAD_UPLOADS"]).iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_accounts = count()
_lock = threading.Lock()


def next_index(n: int) -> int:
    """Each simulated user takes the next account, so no two share a session."""
    with _lock:
        return next(_accounts) % n


class PortalUser(HttpUser):
    abstract = True

    def log_in(self, email: str) -> None:
        page = self.client.get("/accounts/login/", name="login page")
        token = CSRF_INPUT.search(page.text)
        assert token, "the login page has no CSRF token"
        with self.client.post(
            "/accounts/login/",
            data={"csrfmiddlewaretoken": token.group(1), "username": email, "password": PASSWORD},
            headers={"Referer": f"{self.host}/accounts/login/"},
            allow_redirects=False,
            name="login",
            catch_response=True,
        ) as answer:
            if answer.status_code != 302:
                answer.failure(f"login of {email} answered {answer.status_code}")


class Doctor(PortalUser):
    weight = 4
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.log_in(f"doctor{next_index(DOCTORS)}@load.example")
        self.study_ids: list[int] = []
        self.patient_ids = [
            p["id"] for p in self.client.get(f"/api/v1/h/{SLUG}/patients/", name="api: patient list").json()["results"]
        ]

    @task(4)
    def caseload(self) -> None:
        self.client.get(f"/h/{SLUG}/", name="caseload")

    @task(3)
    def api_study_list(self) -> None:
        page = random.randint(1, 5)
        answer = self.client.get(f"/api/v1/h/{SLUG}/studies/?page={page}", name="api: study list")
        if answer.ok:
            self.study_ids = [s["id"] for s in answer.json()["results"]] or self.study_ids

    @task(2)
    def study_page(self) -> None:
        if self.study_ids:
            self.client.get(f"/h/{SLUG}/studies/{random.choice(self.study_ids)}/", name="study page")

    @task(1)
    def review_page(self) -> None:
        if self.study_ids:
            self.client.get(f"/h/{SLUG}/studies/{random.choice(self.study_ids)}/review/", name="review page")

    @task(1)
    def upload(self) -> None:
        image = random.choice(UPLOADS)
        with self.client.post(
            f"/api/v1/h/{SLUG}/studies/",
            data={"patient": random.choice(self.patient_ids)},
            files={"file": (f"load-{image.name}", image.read_bytes(), "image/jpeg")},
            headers={"X-CSRFToken": self.client.cookies.get("csrftoken", ""), "Referer": f"{self.host}/"},
            name="api: upload",
            catch_response=True,
        ) as answer:
            if answer.status_code != 201:
                answer.failure(f"upload answered {answer.status_code}: {answer.text[:200]}")


class Patient(PortalUser):
    weight = 1
    wait_time = between(2, 5)

    def on_start(self) -> None:
        self.log_in(f"patient{next_index(PATIENTS)}@load.example")

    @task
    def my_reports(self) -> None:
        self.client.get(f"/h/{SLUG}/my/", name="patient: my reports")
