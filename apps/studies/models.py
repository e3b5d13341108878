"""Patients, the doctors caring for them, and the imaging studies uploaded for them."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.db import models
from django_scopes import ScopedManager

from apps.accounts.models import Hospital

if TYPE_CHECKING:
    from apps.accounts.tenancy import Tenant


# ``visible_to`` asks apps.studies.access, which builds on the models below: imported when called.
class PatientQuerySet(models.QuerySet["Patient"]):
    def visible_to(self, tenant: Tenant) -> PatientQuerySet:
        """Patients the tenant's user sees: admins all, doctors those they care for, a patient
        user their own record(s)."""
        from .access import clinical_rows, own_rows

        return self.filter(clinical_rows(tenant, patient="pk") | own_rows(tenant, patient_user="user"))


class CareAssignmentQuerySet(models.QuerySet["CareAssignment"]):
    def visible_to(self, tenant: Tenant) -> CareAssignmentQuerySet:
        """Admins see every assignment of the hospital, doctors the care teams of their patients."""
        from .access import clinical_rows

        return self.filter(clinical_rows(tenant))


class StudyQuerySet(models.QuerySet["Study"]):
    def visible_to(self, tenant: Tenant) -> StudyQuerySet:
        """Admins see every study of the hospital, doctors those of the patients they care for;
        patients none (they read signed reports)."""
        from .access import clinical_rows

        return self.filter(clinical_rows(tenant))

    def in_record(self) -> StudyQuerySet:
        """Studies that count: those not marked as entered in error."""
        return self.filter(entered_in_error_at__isnull=True)


class Sex(models.TextChoices):
    FEMALE = "F", "Female"
    MALE = "M", "Male"
    OTHER = "O", "Other"
    UNKNOWN = "U", "Unknown"


PatientManager = models.Manager.from_queryset(PatientQuerySet)


class Patient(models.Model):
    """A patient record of one hospital, identified there by its MRN.

    ``user`` links the record to the patient's own login (optional): through it the patient
    reads their signed reports and messages their doctors.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField("MRN", max_length=40, help_text="Medical record number, unique in the hospital.")
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    birth_date = models.DateField()
    sex = models.CharField(max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="patient_records",
        help_text="The patient's own login, if they have one.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[PatientManager[Patient]] = ScopedManager(PatientManager, hospital="hospital")
    _default_manager: ClassVar[PatientManager[Patient]]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["family_name", "given_name", "mrn"]
        constraints = [models.UniqueConstraint(fields=["hospital", "mrn"], name="unique_mrn_per_hospital")]
        indexes = [models.Index(fields=["hospital", "family_name"])]

    def __str__(self) -> str:
        return f"{self.family_name.upper()}, {self.given_name} ({self.mrn})"

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"


CareAssignmentManager = models.Manager.from_queryset(CareAssignmentQuerySet)


class CareAssignment(models.Model):
    """A doctor caring for a patient: the one record of the care relation. While it exists and
    the doctor is an active doctor of the hospital, the doctor sees the patient, their studies and
    reports, and may chat with them (``apps.studies.access``). Created and deleted only by
    ``services.assign_doctor`` / ``unassign_doctor``, which audit the change and close open chats."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="care_assignments")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="care_assignments")
    doctor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="care_assignments")
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[CareAssignmentManager[CareAssignment]] = ScopedManager(CareAssignmentManager, hospital="hospital")
    _default_manager: ClassVar[
        CareAssignmentManager[CareAssignment]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["patient", "doctor"], name="unique_care_assignment")]

    def __str__(self) -> str:
        return f"{self.doctor} → {self.patient}"


class StudyStatus(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    QUEUED = "queued", "Queued for AI read"
    PROCESSING = "processing", "AI read in progress"
    DONE = "done", "AI read ready"
    #: The AI read the image but could not choose between two (or more) findings.
    UNSURE = "unsure", "AI unsure"
    #: The AI made no read (not a chest X-ray or brain MRI, unlike its training images, unreadable…).
    REFUSED = "refused", "Not read by the AI"
    FAILED = "failed", "AI read failed"


#: The states a study's AI read ends in (nothing more happens unless it is re-run).
FINISHED_STATUSES = frozenset({StudyStatus.DONE, StudyStatus.UNSURE, StudyStatus.REFUSED, StudyStatus.FAILED})
#: The finished states that have a stored AI result (a read, an unsure read, or a refusal).
RESULT_STATUSES = frozenset({StudyStatus.DONE, StudyStatus.UNSURE, StudyStatus.REFUSED})


class Modality(models.TextChoices):
    UNKNOWN = "", "Not yet known"
    CHEST_XRAY = "chest_xray", "Chest X-ray"
    BRAIN_MRI = "brain_mri", "Brain MRI"
    UNSUPPORTED = "unsupported", "Unsupported image"


class SourceFormat(models.TextChoices):
    PNG = "png", "PNG"
    JPEG = "jpeg", "JPEG"
    DICOM = "dicom", "DICOM"


StudyManager = models.Manager.from_queryset(StudyQuerySet)


class Study(models.Model):
    """One uploaded image of a patient, stored encrypted, and the state of its AI read.

    ``status`` moves uploaded → queued → processing → done | unsure | refused | failed: ``done``
    when the AI suggests a label, ``unsure`` when it could not choose between findings,
    ``refused`` when it made no read of the image, ``failed`` when the read could not run.
    ``status_message`` is written for clinicians ("Not read by the AI: this looks like a CT…").
    ``processing_until`` is the lease of the worker reading it (apps/diagnosis/watchdog.py).
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="studies")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="uploaded_studies"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    status = models.CharField(max_length=20, choices=StudyStatus.choices, default=StudyStatus.UPLOADED)
    status_message = models.CharField(max_length=500, blank=True)
    processing_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While processing: the reading worker's lease, renewed as it works. Past it, the worker is "
        "taken for dead and the read is sent again.",
    )
    modality = models.CharField(max_length=20, choices=Modality.choices, blank=True, default=Modality.UNKNOWN)
    source_format = models.CharField(max_length=10, choices=SourceFormat.choices)
    original_filename = models.CharField(max_length=255)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    dicom_modality = models.CharField(max_length=16, blank=True, help_text="DICOM (0008,0060) tag, if any.")
    dicom_display = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the viewer needs from a DICOM file: windows, pixel spacing, stored value range "
        "(apps/studies/dicom.py).",
    )
    # The encrypted file (see apps/studies/storage.py). sha256 is of the plaintext.
    file_name = models.CharField(max_length=300)
    file_sha256 = models.CharField(max_length=64)
    file_key_id = models.CharField(max_length=40)
    file_size = models.PositiveBigIntegerField()
    # Marked by a doctor as entered in error (wrong patient, wrong file…): it leaves the worklist
    # and the patient's view; the row, its file and its audit trail stay.
    entered_in_error_at = models.DateTimeField(null=True, blank=True)
    entered_in_error_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    entered_in_error_reason = models.TextField(blank=True, max_length=2000)

    objects: ClassVar[StudyManager[Study]] = ScopedManager(StudyManager, hospital="hospital")
    _default_manager: ClassVar[StudyManager[Study]]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "studies"
        indexes = [
            models.Index(fields=["hospital", "status"]),
            models.Index(fields=["patient", "-created_at"]),
            # The watchdog's scan across hospitals: only the few studies in flight are indexed.
            models.Index(
                fields=["status", "updated_at"],
                condition=models.Q(status__in=["queued", "processing"]),
                name="studies_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return f"Study #{self.pk} of {self.patient.mrn} ({self.get_status_display()})"

    @property
    def entered_in_error(self) -> bool:
        return self.entered_in_error_at is not None

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES
