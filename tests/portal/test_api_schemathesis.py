"""Property-based tests of the REST API against its own OpenAPI schema (schemathesis).

Every operation in ``/api/schema/`` is called with generated input, authenticated as a doctor
(Alice, an API token) in her hospital, and every answer must conform to the schema: no 5xx, a
documented status code, a documented content type and headers, a body that matches the schema.
Not checked: that every schema-valid request is accepted (schemathesis' ``positive_data_acceptance``).
Some rules cannot be written in a schema and answer a documented 400 with the reason: an MRN new in
the hospital, a patient of your own caseload, a file that is really an image.

Bounded: a few examples per operation (``EXAMPLES``), no shrinking, and no per-example deadline
(timings on a shared CI machine vary too much for one); the whole run is held to
``pytest.mark.timeout``. The logout operations are left out: they would revoke the token the run
uses (tests/portal/test_api.py covers them).
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, settings

from apps.accounts import tokens

pytestmark = pytest.mark.django_db

EXAMPLES = 12


# Loaded when the tests are collected, from the schema the running app serves (no database needed).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application()).exclude(
    path_regex=r"^/api/v1/auth/logout"
)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Calls go through the real WSGI application, which closes the database connection after
    each request; that would close the test's own transaction. Django's test client switches the
    same signal handler off for its requests."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def alice_token(world) -> str:
    return tokens.create(world.alice, name="schemathesis")[1]


@pytest.mark.timeout(600)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_schema_says(case, world, alice_token):
    if "hospital_slug" in (case.path_parameters or {}):
        case.path_parameters["hospital_slug"] = world.a.slug  # her hospital; others are a plain 404
    case.call_and_validate(
        headers={"Authorization": f"Token {alice_token}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom"])
def test_each_download_content_type_is_in_the_schema(world, alice_token, kind):
    """Generated ids rarely hit a real study, so each kind of stored image is downloaded once here
    and checked like above (content type, headers, status) against the schema."""
    from tests.factories import dicom_bytes, jpeg_bytes, make_study, png_bytes

    data = {"png": png_bytes, "jpeg": jpeg_bytes, "dicom": dicom_bytes}[kind]()
    study = make_study(world.paul_record, world.alice, data)
    operation = schema["/api/v1/h/{hospital_slug}/studies/{id}/image/"]["GET"]
    case = operation.Case(path_parameters={"hospital_slug": world.a.slug, "id": study.pk})
    response = case.call_and_validate(headers={"Authorization": f"Token {alice_token}"})
    assert response.status_code == 200 and response.content == data
