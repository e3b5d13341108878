"""Reports routes: the doctor's review screen, report pages and PDF downloads, the patient portal
and the history timeline.

Who gets what (hospital A, Paul's records):
* Alice (assigned doctor): review, sign, amend, report pages, PDF, timeline.
* Carol (hospital admin): report pages, PDF, timeline; not the review screen or its forms (403).
* Paul (patient user): his own signed reports in the portal and their PDFs; never drafts, never
  another patient's report (404), never staff pages (403).
* Bob (unassigned doctor): 404 on everything about Paul; 403 on the patient portal.
* Dora (hospital B): 404 everywhere in hospital A.
"""

from __future__ import annotations

from typing import Any

from tests.routes import Route


def _study(w: Any) -> dict[str, Any]:
    from tests.factories import make_study

    return {"study_pk": make_study(w.paul_record, w.alice).pk}


def _study_with_ai_read(w: Any) -> dict[str, Any]:
    from tests.factories import make_study
    from tests.reports.helpers import make_diagnosis

    study = make_study(w.paul_record, w.alice)
    make_diagnosis(study)
    return {"study_pk": study.pk}


def _signed(w: Any) -> dict[str, Any]:
    """Paul's signed report, its PDF not rendered (rendering is only needed for downloads)."""
    from tests.reports.helpers import signed_report

    return {"pk": signed_report(w.paul_record, w.alice, with_pdf=False).pk}


def _signed_pdf(w: Any) -> dict[str, Any]:
    from tests.reports.helpers import signed_report

    return {"pk": signed_report(w.paul_record, w.alice).pk}


def _draft(w: Any) -> dict[str, Any]:
    from tests.factories import make_study
    from tests.reports.helpers import write_report

    return {"pk": write_report(make_study(w.paul_record, w.alice), w.alice).pk}


def _olga_signed(w: Any) -> dict[str, Any]:
    from tests.reports.helpers import doctor_for, signed_report

    return {"pk": signed_report(w.other_a, doctor_for(w.other_a)).pk}


def _patient(w: Any) -> dict[str, Any]:
    return {"patient_pk": w.paul_record.pk}


def _report_form(w: Any) -> dict[str, Any]:
    return {"findings": "Clear lungs.", "impression": "Normal.", "final_label": "normal", "action": "save"}


def _confirmed_draft(w: Any) -> dict[str, Any]:
    """The draft token of the newest draft (the one ``_draft`` just made), as the confirmation
    page sends it."""
    from django_scopes import scopes_disabled

    from apps.reports.models import Report
    from apps.reports.views import draft_token

    with scopes_disabled():
        return {"draft": draft_token(Report.objects.filter(status="draft").latest("pk"))}


def _check_asks_identity(response: Any, w: Any) -> None:
    assert response["Location"].startswith("/accounts/confirm/")


def _check_pdf(response: Any, w: Any) -> None:
    assert response["Content-Type"] == "application/pdf" and response.content.startswith(b"%PDF")


def _check_image(response: Any, w: Any) -> None:
    assert response["Content-Type"] in ("image/png", "image/jpeg") and response["Cache-Control"] == "private, no-store"


def _check_portal(response: Any, w: Any) -> None:
    assert b"/review/" not in response.content and b"/studies/" not in response.content


ROUTES = [
    # GET /h/st-mary/worklist/ — every study the clinician sees (Bob's list is empty but his own).
    Route("reports:worklist", unassigned_doctor=200),
    Route("reports:worklist", label="admin", unassigned_doctor=200, owner=("carol", 200)),
    # GET /h/st-mary/studies/<study_pk>/review/ — the doctor's review screen.
    Route("reports:review", kwargs=_study),
    # POST the same page: save the report draft (then redirect back).
    Route("reports:review", method="POST", kwargs=_study, data=_report_form, owner=("alice", 302)),
    Route("reports:review", label="admin", kwargs=_study, owner=("carol", 403)),
    # POST the same page with action=sign: the draft is saved, then on to the signature page.
    Route(
        "reports:review",
        label="sign",
        method="POST",
        kwargs=_study_with_ai_read,
        data=lambda w: {**_report_form(w), "action": "sign"},
        owner=("alice", 302),
    ),
    # GET/POST /h/st-mary/reports/<pk>/sign/ — confirm and sign the draft (after re-authenticating:
    # without it, both redirect to the confirmation of identity).
    Route("reports:sign", kwargs=_draft, owner=("alice", 302), check=_check_asks_identity),
    Route("reports:sign", method="POST", kwargs=_draft, data=_confirmed_draft, owner=("alice", 302)),
    # GET /h/st-mary/reports/<pk>/ — one version of a report, read-only (staff).
    Route("reports:detail", kwargs=_signed),
    Route("reports:detail", label="admin", kwargs=_signed, owner=("carol", 200)),
    Route("reports:detail", label="draft", kwargs=_draft),
    # POST /h/st-mary/reports/<pk>/amend/ — start version n+1.
    Route(
        "reports:amend", method="POST", kwargs=_signed, data=lambda w: {"reason": "Wrong side."}, owner=("alice", 302)
    ),
    # GET /h/st-mary/reports/<pk>/pdf/ — download: the patient, his doctors, the admins.
    Route("reports:pdf", kwargs=_signed_pdf, patient=200, owner=("alice", 200), check=_check_pdf),
    Route("reports:pdf", label="patient", kwargs=_signed_pdf, patient=200, owner=("paul", 200), check=_check_pdf),
    Route("reports:pdf", label="admin", kwargs=_signed_pdf, patient=200, owner=("carol", 200), check=_check_pdf),
    Route("reports:pdf", label="draft", kwargs=_draft, patient=404, owner=("alice", 404)),
    Route("reports:pdf", label="other patient", kwargs=_olga_signed, patient=404, owner=("carol", 200)),
    Route("reports:pdf", label="not rendered yet", kwargs=_signed, patient=202, owner=("alice", 202)),
    # POST /h/st-mary/reports/<pk>/pdf/retry/ — queue the PDF again.
    Route("reports:pdf_retry", method="POST", kwargs=_signed, data=lambda w: {}, owner=("alice", 302)),
    # GET /h/st-mary/my/ — the patient portal (patients only).
    Route("reports:my_home", patient=200, unassigned_doctor=403, owner=("paul", 200), check=_check_portal),
    # GET /h/st-mary/my/reports/<pk>/ — one signed report in plain language.
    Route("reports:my_report", kwargs=_signed, patient=200, unassigned_doctor=403, owner=("paul", 200)),
    Route("reports:my_report", label="draft", kwargs=_draft, patient=404, unassigned_doctor=403, owner=("paul", 404)),
    Route(
        "reports:my_report",
        label="other patient",
        kwargs=_olga_signed,
        patient=404,
        unassigned_doctor=403,
        owner=("paul", 404),
    ),
    # GET /h/st-mary/my/reports/<pk>/image/ — the image the report is about, for its patient only.
    Route(
        "reports:my_report_image",
        kwargs=_signed,
        patient=200,
        unassigned_doctor=403,
        owner=("paul", 200),
        check=_check_image,
    ),
    Route(
        "reports:my_report_image",
        label="draft",
        kwargs=_draft,
        patient=404,
        unassigned_doctor=403,
        owner=("paul", 404),
    ),
    Route(
        "reports:my_report_image",
        label="other patient",
        kwargs=_olga_signed,
        patient=404,
        unassigned_doctor=403,
        owner=("paul", 404),
    ),
    # GET /h/st-mary/patients/<patient_pk>/timeline/ — the patient's history (staff).
    Route("reports:timeline", kwargs=_patient),
    Route("reports:timeline", label="admin", kwargs=_patient, owner=("carol", 200)),
]
