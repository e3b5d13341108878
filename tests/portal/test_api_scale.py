"""The API at scale: a study list page costs the same number of queries for 1 or 20 studies (no
query per row for the AI read), and ids in query strings and form fields are parsed strictly
(400 with a message, never a 500)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.auditchain import QUERIES_PER_EVENT
from apps.diagnosis.models import Diagnosis
from tests.auth import APIClient
from tests.diagnosis.helpers import make_diagnosis
from tests.factories import make_study, png_bytes

BACKEND = "django.contrib.auth.backends.ModelBackend"
#: Session, user, the second-factor gate, membership/tenant, count, page, the diagnoses prefetch, the audit
#: event… (9 measured with the prefetch, plus the event's; 67 without it for 20 studies): what matters is
#: that it does not grow with the page.
MAX_QUERIES_PER_PAGE = 9 + QUERIES_PER_EVENT


@pytest.fixture
def api(world):
    client = APIClient()
    client.force_login(world.alice, backend=BACKEND)
    return client


def study_list_url(world, **params):
    url = reverse("api:study-list", kwargs={"hospital_slug": world.a.slug})
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


@pytest.mark.parametrize("count", [1, 20])
@pytest.mark.parametrize("route", ["study-list", "patient-studies"])
def test_study_list_queries_do_not_grow_with_the_page(api, world, django_assert_max_num_queries, count, route):
    for _ in range(count):
        make_diagnosis(make_study(world.paul_record, world.alice))
    kwargs = {"hospital_slug": world.a.slug}
    if route == "patient-studies":
        kwargs["pk"] = world.paul_record.pk
    with django_assert_max_num_queries(MAX_QUERIES_PER_PAGE):
        response = api.get(reverse(f"api:{route}", kwargs=kwargs))
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == count
    assert all(row["diagnosis"]["label"] == "bacterial_pneumonia" for row in results)
    assert all(row["diagnosis"]["models"]["chest"]["version"] == "test-fixture" for row in results)


def test_list_shows_the_newest_of_several_diagnoses(api, world):
    study = make_study(world.paul_record, world.alice)
    older = make_diagnosis(study, label="normal")
    with scopes_disabled():  # an earlier read by other model versions
        Diagnosis.objects.filter(pk=older.pk).update(
            versions_key="earlier", created_at=older.created_at - dt.timedelta(hours=1)
        )
    newest = make_diagnosis(study, label="viral_pneumonia")
    [row] = api.get(study_list_url(world)).json()["results"]
    assert (row["diagnosis"]["id"], row["diagnosis"]["label"]) == (newest.pk, "viral_pneumonia")


def test_study_without_a_diagnosis_lists_none(api, world):
    make_study(world.paul_record, world.alice)
    [row] = api.get(study_list_url(world)).json()["results"]
    assert row["diagnosis"] is None


BAD_IDS = ["abc", "²", "١٢", "-1", "0", "1.5", "99999999999999999999999", "1e3"]


@pytest.mark.parametrize("raw", BAD_IDS)
def test_study_list_patient_filter_must_be_an_id(api, world, raw):
    response = api.get(reverse("api:study-list", kwargs={"hospital_slug": world.a.slug}), {"patient": raw})
    assert response.status_code == 400
    assert "patient filter must be given as a positive whole number" in response.json()["error"]


def test_study_list_patient_filter_by_id(api, world):
    study = make_study(world.paul_record, world.alice)
    url = reverse("api:study-list", kwargs={"hospital_slug": world.a.slug})
    assert [r["id"] for r in api.get(url, {"patient": str(world.paul_record.pk)}).json()["results"]] == [study.pk]
    assert api.get(url, {"patient": str(world.other_a.pk)}).json()["results"] == []


@pytest.mark.parametrize("raw", BAD_IDS)
def test_upload_patient_must_be_an_id(api, world, raw, media_files):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.post(
        reverse("api:study-list", kwargs={"hospital_slug": world.a.slug}),
        {"patient": raw, "file": SimpleUploadedFile("x.png", png_bytes(), "image/png")},
        format="multipart",
    )
    assert response.status_code == 400
    assert "patient must be given as a positive whole number" in response.json()["error"]
    assert media_files() == []


@pytest.mark.parametrize("raw", BAD_IDS)
def test_upload_page_link_with_a_bad_patient_id_is_400(client, world, raw):
    client.force_login(world.alice, backend=BACKEND)
    response = client.get(reverse("studies:upload", kwargs={"hospital_slug": world.a.slug}), {"patient": raw})
    assert response.status_code == 400
    assert "patient in the link must be given as a positive whole number" in response.content.decode()


def test_upload_page_link_preselects_the_patient(client, world):
    client.force_login(world.alice, backend=BACKEND)
    url = reverse("studies:upload", kwargs={"hospital_slug": world.a.slug})
    response = client.get(url, {"patient": str(world.paul_record.pk)})
    assert response.status_code == 200
    assert response.context["form"].initial["patient"] == world.paul_record.pk


def test_database_connections_are_not_kept_under_asgi_by_default():
    """A kept connection leaks under daphne (one thread per request); the load test ran PostgreSQL
    out of connections with the old default of 60 s."""
    from imagemedix import settings as project_settings

    db = project_settings.DATABASES["default"]
    assert db["CONN_MAX_AGE"] == 0 and db["CONN_HEALTH_CHECKS"] is True
