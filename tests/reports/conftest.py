"""Fixtures of the reports tests: Paul's study and reports in various states."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from apps.reports import services

from ..factories import make_study
from .helpers import doctor_for, make_diagnosis, write_report


@pytest.fixture
def paul_study(world):
    return make_study(world.paul_record, world.alice)


@pytest.fixture
def paul_draft(world, paul_study):
    return write_report(paul_study, world.alice)


@pytest.fixture
def paul_signed(world, paul_study):
    return write_report(paul_study, world.alice, sign=True)


@pytest.fixture
def olga_doctor(world):
    """A doctor of hospital A caring for Olga (so that Olga can have signed reports)."""
    return doctor_for(world.other_a)


@pytest.fixture
def olga_signed(world, olga_doctor):
    with scopes_disabled():
        study = make_study(world.other_a, olga_doctor)
    report = write_report(study, olga_doctor, findings="Olga's private findings.", sign=True)
    with scopes_disabled():
        return services.render_report_pdf_now(report.pk)


@pytest.fixture
def paul_signed_pdf(world, paul_signed):
    with scopes_disabled():
        return services.render_report_pdf_now(paul_signed.pk)


@pytest.fixture
def paul_diagnosis(world, paul_study):
    return make_diagnosis(paul_study)
