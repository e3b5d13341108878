"""List pages cost the same number of queries for 1 item as for many."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from .helpers import make_diagnosis, signed_report

pytestmark = pytest.mark.django_db


def _queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return len(ctx.captured_queries)


def test_patient_portal_query_count_does_not_grow(client, world):
    signed_report(world.paul_record, world.alice, with_pdf=False)
    client.force_login(world.paul)
    path = reverse("reports:my_home", args=["st-mary"])
    _queries(client, path)  # warm-up (session, per-process caches)
    one = _queries(client, path)
    for _ in range(4):
        signed_report(world.paul_record, world.alice, with_pdf=False)
    assert _queries(client, path) == one


def test_timeline_query_count_does_not_grow(client, world):
    report = signed_report(world.paul_record, world.alice, with_pdf=False)
    make_diagnosis(report.study)
    client.force_login(world.alice)
    path = reverse("reports:timeline", args=["st-mary", world.paul_record.pk])
    _queries(client, path)  # warm-up (session, per-process caches)
    one = _queries(client, path)
    for _ in range(4):
        report = signed_report(world.paul_record, world.alice, with_pdf=False)
        make_diagnosis(report.study)
    assert _queries(client, path) == one
