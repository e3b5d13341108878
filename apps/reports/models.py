"""Signed clinical reports: one row per version of a study's report."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_scopes import ScopedManager

from apps.accounts.models import Hospital
from apps.accounts.tenancy import Tenant
from apps.diagnosis.models import indeterminate_display
from apps.studies.access import clinical_rows, own_rows


class ReportStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SIGNED = "signed", "Signed"
    AMENDED = "amended", "Replaced by an amendment"


class PdfStatus(models.TextChoices):
    PENDING = "pending", "Being prepared"
    READY = "ready", "Ready"
    FAILED = "failed", "Could not be produced"


class ReportLocked(Exception):
    """A signed (or superseded) report was about to be changed. Signed reports are immutable:
    amend them instead, which creates a new version."""


#: The only fields a signed report may still change: the rendered PDF, and ``status`` moving
#: from signed to amended when a newer version is signed.
MUTABLE_AFTER_SIGNING = frozenset(
    {"status", "pdf_status", "pdf_name", "pdf_sha256", "pdf_key_id", "pdf_size", "pdf_rendered_at", "updated_at"}
)


class ReportQuerySet(models.QuerySet["Report"]):
    """Who reads which report (apps.studies.access): the staff side reads every version of the
    reports about the patients it sees, drafts included; a patient user reads the signed versions
    of their own reports (current or superseded by an amendment), never drafts."""

    def visible_to(self, tenant: Tenant) -> ReportQuerySet:
        """Everything the user may read or download, whatever their roles here."""
        return self.filter(clinical_rows(tenant) | self._own_signed(tenant))

    def clinical_for(self, tenant: Tenant) -> ReportQuerySet:
        """The staff side only (the review, amend and PDF-retry screens)."""
        return self.filter(clinical_rows(tenant))

    def signed_for_patient(self, tenant: Tenant) -> ReportQuerySet:
        """The patient user's own signed reports (their portal)."""
        return self.filter(self._own_signed(tenant))

    def withdrawn_for_patient(self, tenant: Tenant) -> ReportQuerySet:
        """The patient user's own signed reports whose study was entered in error: no longer theirs
        to read, but an old link to one says that it was withdrawn rather than "not found"."""
        return self.filter(
            own_rows(tenant)
            & Q(status__in=(ReportStatus.SIGNED, ReportStatus.AMENDED))
            & Q(study__entered_in_error_at__isnull=False)
        )

    @staticmethod
    def _own_signed(tenant: Tenant) -> Q:
        # A study entered in error leaves the patient's view with its reports.
        return (
            own_rows(tenant)
            & Q(status__in=(ReportStatus.SIGNED, ReportStatus.AMENDED))
            & Q(study__entered_in_error_at__isnull=True)
        )


ReportManager = models.Manager.from_queryset(ReportQuerySet)


#: The longest final label (the doctor's conclusion) a report takes.
FINAL_LABEL_MAX = 120


class Report(models.Model):
    """One version of the doctor's report on a study.

    Lifecycle: ``draft`` → ``signed`` (immutable from then on; ``signed_by``/``signed_at``
    recorded, the AI result snapshotted, a PDF rendered). Amending a signed report creates a
    new row (``version`` + 1, ``supersedes`` pointing at the old one) that starts as a draft;
    when the amendment is signed the old row becomes ``amended`` and stays readable. Until then
    the old version remains the valid report, so an abandoned amendment changes nothing.

    The immutability is enforced here (``save`` refuses to change a signed row) as well as in
    the services, so no code path can quietly edit a signed report.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="reports")
    study = models.ForeignKey("studies.Study", on_delete=models.PROTECT, related_name="reports")
    patient = models.ForeignKey("studies.Patient", on_delete=models.PROTECT, related_name="reports")
    version = models.PositiveIntegerField(default=1)
    supersedes = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="amendment",
        help_text="The signed version this one amends.",
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authored_reports")
    status = models.CharField(max_length=10, choices=ReportStatus.choices, default=ReportStatus.DRAFT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    findings = models.TextField(blank=True)
    impression = models.TextField(blank=True)
    final_label = models.CharField(
        max_length=FINAL_LABEL_MAX, blank=True, help_text="The doctor's conclusion: a specialist label or free text."
    )
    amendment_reason = models.TextField(
        blank=True, max_length=2000, help_text="Why this version amends the previous one (required to sign it)."
    )
    ai_comment = models.TextField(
        blank=True,
        max_length=2000,
        help_text="The doctor's comment on the AI read; recorded with their read of it when the report is signed.",
    )

    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="signed_reports"
    )
    signed_at = models.DateTimeField(null=True, blank=True)

    # What the AI said, copied at signing so the report never changes when models do.
    ai_task = models.CharField(max_length=40, blank=True)
    ai_label = models.CharField(max_length=60, blank=True)
    ai_confidence = models.FloatField(null=True, blank=True)
    # An indeterminate read: the AI hesitated between ``ai_candidates`` (most likely first), so the
    # report shows "Indeterminate: …" and no confidence; ``ai_label`` keeps the top class for the record.
    ai_indeterminate = models.BooleanField(default=False)
    ai_candidates = models.JSONField(default=list, blank=True)
    ai_model_version = models.CharField(max_length=120, blank=True)
    ai_refused = models.BooleanField(default=False)
    ai_note = models.CharField(max_length=500, blank=True, help_text="Refusal reason or modality warning.")

    # The rendered PDF, encrypted (apps/studies/storage.py). sha256 is of the plaintext.
    pdf_status = models.CharField(max_length=10, choices=PdfStatus.choices, default=PdfStatus.PENDING)
    pdf_name = models.CharField(max_length=300, blank=True)
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    pdf_key_id = models.CharField(max_length=40, blank=True)
    pdf_size = models.PositiveBigIntegerField(null=True, blank=True)
    pdf_rendered_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[ReportManager[Report]] = ScopedManager(ReportManager, hospital="hospital")
    _default_manager: ClassVar[ReportManager[Report]]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["study", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["study", "version"], name="unique_report_version"),
            models.UniqueConstraint(fields=["study"], condition=Q(status="draft"), name="one_draft_report_per_study"),
            models.UniqueConstraint(
                fields=["study"], condition=Q(status="signed"), name="one_current_signed_report_per_study"
            ),
        ]
        indexes = [
            models.Index(fields=["hospital", "patient", "status"]),
            models.Index(fields=["hospital", "-signed_at"]),
        ]

    def __str__(self) -> str:
        return f"Report v{self.version} on study #{self.study_id} ({self.get_status_display()})"

    #: The status as loaded from the database (set by from_db and save; None while unsaved).
    _loaded_status: str | None = None

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding and self._loaded_status in (ReportStatus.SIGNED, ReportStatus.AMENDED):
            update_fields = kwargs.get("update_fields")
            if update_fields is None or not set(update_fields) <= MUTABLE_AFTER_SIGNING:
                raise ReportLocked("A signed report cannot be changed. Amend it to create a new version.")
        super().save(*args, **kwargs)
        self._loaded_status = self.status

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.status != ReportStatus.DRAFT:
            raise ReportLocked("A signed report cannot be deleted.")
        return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db: str | None, field_names: Collection[str], values: Collection[Any], **kwargs: Any) -> Report:
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    @property
    def is_draft(self) -> bool:
        return self.status == ReportStatus.DRAFT

    @property
    def is_signed(self) -> bool:
        """Signed at some point (current or superseded by an amendment)."""
        return self.status in (ReportStatus.SIGNED, ReportStatus.AMENDED)

    @property
    def is_current(self) -> bool:
        return self.status == ReportStatus.SIGNED

    @property
    def final_label_display(self) -> str:
        from .ai import display_label

        return display_label(self.final_label)

    @property
    def ai_label_display(self) -> str:
        """The AI result at signing as people read it ("Indeterminate: …" for an unsure read)."""
        from .ai import display_label

        if self.ai_indeterminate:
            return indeterminate_display(self.ai_candidates)
        return display_label(self.ai_label)

    @property
    def pdf_ready(self) -> bool:
        return self.pdf_status == PdfStatus.READY and bool(self.pdf_name)
