"""Reactions to other apps' signals (connected in ChatConfig.ready()).

* ``study_status_changed`` → a live ``study.status`` event to the doctors caring for the
  patient now and the uploader if they may still see the study; a persisted notification when
  the read finishes ("AI read ready", "AI unsure", "Not read by the AI" or "AI read failed",
  with the status message as its body), once per recipient and result (``outcome``) however
  often it is announced.
* ``report_pdf_changed`` → a live ``report.pdf`` event (the PDF is ready or failed) to the same
  people as the study's status;
* ``care_assignment_ended`` → the doctor's and the patient's open sockets re-validate, so their
  chat about that patient closes;
* ``access_changed`` (apps.accounts.signals: logout, password change, membership or account
  switched off) → the user's open sockets re-validate, and those no longer allowed close.

All are sent after commit. A failure here is logged and never
propagated: it must not fail the diagnosis task or the unassignment that triggered it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.urls import NoReverseMatch, reverse

from apps.accounts.tenancy import tenant_scope
from apps.reports.events import report_pdf_event
from apps.studies.access import care_team, may_see_study
from apps.studies.models import FINISHED_STATUSES, Patient, Study, StudyStatus

from . import notifications
from .models import NotificationKind, access_group

log = logging.getLogger(__name__)

# Tried in order; the studies app owns the name of its study page.
_STUDY_URL_NAMES = ("studies:study", "studies:study_detail", "studies:detail")


def study_url(hospital_slug: str, study_id: int) -> str:
    for name in _STUDY_URL_NAMES:
        try:
            return reverse(name, args=[hospital_slug, study_id])
        except NoReverseMatch:
            continue
    return ""


def study_recipients(study: Study) -> list[int]:
    """Who hears about the study, decided at send time: the doctors caring for the patient now,
    and the uploader only while they may still see the study (a hospital admin, or a doctor still
    on the care team). A doctor taken off the care team hears nothing more, not even about a
    study they uploaded themselves."""
    recipients = set(care_team(study.hospital_id, study.patient_id))
    uploader = study.uploaded_by
    if uploader is not None and uploader.pk not in recipients and may_see_study(uploader, study):
        recipients.add(uploader.pk)
    return sorted(recipients)


def study_status_event(study_id: int, status: str, message: str) -> dict[str, Any]:
    """The ``study.status`` WebSocket event, pushed on a change or asked for by a page."""
    label = StudyStatus(status).label if status in StudyStatus.values else status
    return {"type": "study.status", "study_id": study_id, "status": status, "label": label, "message": message}


def on_study_status_changed(
    sender: Any, *, study_id: int, hospital_id: int, status: str, message: str = "", outcome: str = "", **kwargs: Any
) -> None:
    try:
        _study_status_changed(study_id, hospital_id, status, message, outcome)
    except Exception:  # never fail the task that changed the status
        log.exception("Could not announce the status of study %s", study_id)


def _study_status_changed(study_id: int, hospital_id: int, status: str, message: str, outcome: str) -> None:
    with tenant_scope(hospital_id):
        study = Study.objects.filter(pk=study_id).select_related("patient", "hospital", "uploaded_by").first()
        if study is None:
            return
        recipients = study_recipients(study)
        event = study_status_event(study_id, status, message)
        for user_id in recipients:
            notifications.push_event(hospital_id=hospital_id, user_id=user_id, event=event)
        if status not in FINISHED_STATUSES:
            return
        patient = study.patient
        # A refused or indeterminate read is a result too, but its title must not say "ready".
        kind = NotificationKind.STUDY_FAILED if status == StudyStatus.FAILED else NotificationKind.RESULT_READY
        title = f"{StudyStatus(status).label} for {patient.full_name} ({patient.mrn})"
        url = study_url(study.hospital.slug, study_id)
        for user_id in recipients:
            notifications.notify(
                hospital_id=hospital_id,
                user_id=user_id,
                kind=kind,
                title=title,
                body=message,
                url=url,
                data={"study_id": study_id, "status": status},
                # A result announced again (a rerun found it stored) is notified once per recipient.
                key=f"study:{study_id}:{outcome}" if outcome else "",
            )


def on_report_pdf_changed(
    sender: Any, *, hospital_id: int, report_id: int, study_id: int, status: str, **kwargs: Any
) -> None:
    """A report's PDF is ready (or failed): a live ``report.pdf`` event to whoever hears about the
    study, so an open review or report page shows the download link without a reload."""
    try:
        with tenant_scope(hospital_id):
            study = Study.objects.filter(pk=study_id).select_related("patient", "hospital", "uploaded_by").first()
            if study is None:
                return
            event = report_pdf_event(study.hospital.slug, report_id, study_id, status)
            for user_id in study_recipients(study):
                notifications.push_event(hospital_id=hospital_id, user_id=user_id, event=event)
    except Exception:  # never fail the PDF task that announced it
        log.exception("Could not announce the PDF of report %s", report_id)


def on_care_assignment_ended(sender: Any, *, hospital_id: int, patient_id: int, doctor_id: int, **kwargs: Any) -> None:
    """Both parties' sockets re-validate: their chat about this patient closes (4403)."""
    try:
        with tenant_scope(hospital_id):
            patient_user_id = Patient.objects.filter(pk=patient_id).values_list("user_id", flat=True).first()
        for user_id in (doctor_id, patient_user_id):
            if user_id is not None:
                revoke_sockets(user_id)
    except Exception:
        log.exception("Could not close the chat sockets of patient %s and doctor %s", patient_id, doctor_id)


def on_access_changed(sender: Any, *, user_id: int, reason: str, **kwargs: Any) -> None:
    """Logout, password change, membership or account switched off: the user's sockets re-validate."""
    revoke_sockets(user_id)


def revoke_sockets(user_id: int) -> None:
    """Tell every open socket of the user to re-validate now; those no longer allowed close."""
    notifications.group_send(access_group(user_id), {"type": "access.revoked"})
