"""Hospital integration: the credentials a PACS stores and reads with, the DICOM studies and
instances that arrived over DICOMweb, and the queue of those whose patient is not known yet."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_scopes import ScopedManager

from apps.accounts.models import Hospital
from apps.accounts.tenancy import Tenant
from apps.studies.access import clinical_rows

#: The role an integration credential acts in. It is not a membership role: a credential belongs
#: to a hospital, not to a person, and it opens the DICOMweb endpoints of that hospital only
#: (store; search and retrieve the hospital's matched studies), never a page or the REST API.
INTEGRATION_ROLE = "integration"


class IntegrationCredential(models.Model):
    """A secret a hospital's PACS (or another system) uses to store and read studies over DICOMweb.

    Created, listed and revoked by the hospital admin. Only ``key_id`` (public, names the
    credential in lists, logs and the HTTP Basic user name) and the SHA-256 of the secret are
    stored; the secret is shown once when the credential is created. Every use is audited.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="integration_credentials")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. “Orthanc, radiology”.")
    key_id = models.CharField(max_length=24, unique=True)
    secret_sha256 = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects: ClassVar[models.Manager[IntegrationCredential]] = ScopedManager(hospital="hospital")
    _default_manager: ClassVar[
        models.Manager[IntegrationCredential]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["revoked_at", "-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class DicomStudyQuerySet(models.QuerySet["DicomStudy"]):
    def visible_to(self, tenant: Tenant) -> DicomStudyQuerySet:
        """Admins see every DICOM study of the hospital (the unmatched queue too), doctors those of
        the patients they care for; patients none."""
        return self.filter(clinical_rows(tenant))


DicomStudyManager = models.Manager.from_queryset(DicomStudyQuerySet)


class DicomStudy(models.Model):
    """One DICOM study (StudyInstanceUID) of a hospital, as it arrived over DICOMweb.

    ``patient`` is the portal's patient it belongs to: found by Patient ID (MRN) in this hospital
    when the first instance arrived, or chosen by a hospital admin later. While it is empty the
    study waits in the "unmatched" queue, its instances held encrypted and not yet read by the
    AI. The ``sent_*`` fields keep what the sender said about the patient, for that decision.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="dicom_studies")
    study_instance_uid = models.CharField(max_length=64)
    patient = models.ForeignKey(
        "studies.Patient", on_delete=models.PROTECT, null=True, blank=True, related_name="dicom_studies"
    )
    sent_patient_id = models.CharField("Patient ID as sent", max_length=64, blank=True)
    sent_patient_name = models.CharField("patient name as sent", max_length=200, blank=True)
    sent_birth_date = models.CharField("birth date as sent", max_length=8, blank=True)
    sent_sex = models.CharField("sex as sent", max_length=16, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    study_date = models.CharField(max_length=8, blank=True, help_text="DICOM DA (YYYYMMDD).")
    study_time = models.CharField(max_length=16, blank=True)
    description = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    matched_at = models.DateTimeField(null=True, blank=True)
    matched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The hospital admin who resolved it; empty when the Patient ID matched on arrival.",
    )

    objects: ClassVar[DicomStudyManager[DicomStudy]] = ScopedManager(DicomStudyManager, hospital="hospital")
    _default_manager: ClassVar[
        DicomStudyManager[DicomStudy]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "DICOM studies"
        constraints = [
            models.UniqueConstraint(fields=["hospital", "study_instance_uid"], name="unique_dicom_study_per_hospital")
        ]
        indexes = [models.Index(fields=["hospital", "patient"])]

    def __str__(self) -> str:
        return f"DICOM study {self.study_instance_uid} ({'matched' if self.patient_id else 'unmatched'})"

    @property
    def is_matched(self) -> bool:
        return self.patient_id is not None


class DicomInstanceQuerySet(models.QuerySet["DicomInstance"]):
    def visible_to(self, tenant: Tenant) -> DicomInstanceQuerySet:
        """Admins see every instance of the hospital (those held for the unmatched queue too),
        doctors those filed as studies of the patients they care for; patients none."""
        return self.filter(clinical_rows(tenant, patient="study__patient"))


DicomInstanceManager = models.Manager.from_queryset(DicomInstanceQuerySet)


class DicomInstance(models.Model):
    """One DICOM instance (SOPInstanceUID) received over DICOMweb.

    Once its study is matched, the instance is a portal ``Study`` (``study``: stored encrypted,
    read by the AI, on the worklist). Until then its file is held here, encrypted like every
    file (``held_*``), and moved into a ``Study`` when a hospital admin resolves the study.
    A SOPInstanceUID is stored once per hospital: sending it again changes nothing.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="dicom_instances")
    dicom_study = models.ForeignKey(DicomStudy, on_delete=models.CASCADE, related_name="instances")
    series_instance_uid = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    instance_number = models.IntegerField(null=True, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    study = models.OneToOneField(
        "studies.Study", on_delete=models.PROTECT, null=True, blank=True, related_name="dicom_instance"
    )
    held_file_name = models.CharField(max_length=300, blank=True)
    held_file_sha256 = models.CharField(max_length=64, blank=True)
    held_file_key_id = models.CharField(max_length=40, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    credential = models.ForeignKey(
        IntegrationCredential, on_delete=models.SET_NULL, null=True, blank=True, related_name="instances"
    )

    objects: ClassVar[DicomInstanceManager[DicomInstance]] = ScopedManager(DicomInstanceManager, hospital="hospital")
    _default_manager: ClassVar[
        DicomInstanceManager[DicomInstance]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["series_number", "instance_number", "id"]
        constraints = [
            models.UniqueConstraint(fields=["hospital", "sop_instance_uid"], name="unique_sop_instance_per_hospital"),
            # Either it is a portal study, or its file is held until the study is matched.
            models.CheckConstraint(
                condition=Q(study__isnull=False, held_file_name="") | Q(study__isnull=True) & ~Q(held_file_name=""),
                name="dicom_instance_study_xor_held_file",
            ),
        ]

    def __str__(self) -> str:
        return f"DICOM instance {self.sop_instance_uid}"
