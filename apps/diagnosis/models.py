"""The AI second read: the model registry, the stored results, and the doctors' feedback on them.

``ModelVersion`` is platform-wide (every hospital uses the same registered models);
``Diagnosis`` and ``Feedback`` are tenant-owned and scoped by hospital like every study.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q, Sum
from django_scopes import ScopedManager

from apps.accounts.models import Hospital
from apps.accounts.tenancy import Tenant
from apps.studies.access import clinical_rows
from apps.studies.models import Modality, Study


class Task(models.TextChoices):
    """What a model does: stage 1 routes the image, stage 2 specialists read it."""

    ROUTER = "router", "Router (chest X-ray / brain MRI / unsupported)"
    CHEST = "chest", "Chest X-ray specialist"
    BRAIN = "brain", "Brain MRI specialist"


#: The specialist task for each route the router can answer.
SPECIALIST_FOR_ROUTE: dict[str, Task] = {Modality.CHEST_XRAY.value: Task.CHEST, Modality.BRAIN_MRI.value: Task.BRAIN}
SPECIALIST_TASKS = (Task.CHEST, Task.BRAIN)
#: The route of each specialist: also its dataset folder in shared/datasets and in export_feedback.
ROUTE_FOR_SPECIALIST = {task.value: route for route, task in SPECIALIST_FOR_ROUTE.items()}


class RefusalCode(models.TextChoices):
    """Why the pipeline made no AI read (``PipelineResult.refusal_code``); ``refusal_reason`` has the words."""

    OTHER_MODALITY = "other_modality", "Not a chest X-ray or brain MRI"
    UNCLEAR_ROUTE = "unclear_route", "Image type unclear"
    UNLIKE_TRAINING = "unlike_training", "Unlike the images the model was trained on"
    UNREADABLE = "unreadable", "Image unreadable for the AI"


class ModelVersion(models.Model):
    """One trained artifact (weights + model card) in the registry.

    Platform-wide, not tenant-owned. One version per task is active; other versions of the
    task may take a share of the studies (``rollout_percent``) for an A/B comparison, assigned
    deterministically per study (see ``registry.choose_version``). Each version carries its
    own labels, decision thresholds and calibration temperature, read from its model card.
    """

    task = models.CharField(max_length=10, choices=Task.choices)
    version = models.CharField(max_length=64)
    weights_sha256 = models.CharField("weights SHA-256", max_length=64)
    artifact_path = models.CharField(
        max_length=500, help_text="Folder of the artifact, relative to MODEL_WEIGHTS_DIR (or absolute)."
    )
    labels = models.JSONField(default=list, help_text="Class labels, in the model's output order.")
    metrics = models.JSONField(default=dict, blank=True, help_text="Test metrics from the model card.")
    thresholds = models.JSONField(default=dict, blank=True)
    temperature = models.FloatField(default=1.0)
    card = models.JSONField(default=dict, blank=True, help_text="The full model card, as shipped.")
    is_active = models.BooleanField(default=False)
    rollout_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(100)],
        help_text="Share of studies (0–100) that try this version while another one is active.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "version"], name="unique_model_version"),
            models.UniqueConstraint(fields=["task"], condition=Q(is_active=True), name="one_active_model_per_task"),
            models.CheckConstraint(condition=Q(rollout_percent__lte=100), name="rollout_percent_at_most_100"),
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.version}"

    @property
    def artifact_dir(self) -> Path:
        return Path(settings.MODEL_WEIGHTS_DIR) / self.artifact_path

    @property
    def accuracy(self) -> float | None:
        value = self.metrics.get("accuracy") if isinstance(self.metrics, dict) else None
        return float(value) if isinstance(value, int | float) else None

    @property
    def short_sha(self) -> str:
        return self.weights_sha256[:12]

    def clean(self) -> None:
        others = (
            ModelVersion.objects.filter(task=self.task, is_active=False)
            .exclude(pk=self.pk)
            .aggregate(total=Sum("rollout_percent"))["total"]
            or 0
        )
        own = 0 if self.is_active else self.rollout_percent
        if others + own > 100:
            raise ValidationError({"rollout_percent": "The rollouts of one task cannot add up to more than 100%."})


class DiagnosisQuerySet(models.QuerySet["Diagnosis"]):
    def visible_to(self, tenant: Tenant) -> DiagnosisQuerySet:
        """Exactly those who see the study: the hospital's admins, the doctors caring for the patient."""
        return self.filter(clinical_rows(tenant, patient="study__patient"))


DiagnosisManager = models.Manager.from_queryset(DiagnosisQuerySet)


class Diagnosis(models.Model):
    """The AI second read of one study by one set of model versions.

    Stage 1 (router) always ran; if the image was refused (``refused``, ``refusal_code``) there
    is no specialist result (``specialist_version`` is then the specialist whose feature-space
    check refused the image, for ``unlike_training``, else None). An ``indeterminate`` read
    names its ``candidates`` instead of a label: ``label_display`` says "Indeterminate: …" and
    ``confidence`` is None. The Grad-CAM overlay is stored encrypted like every file
    (apps/studies/storage.py).
    ``versions_key`` names the model versions used ("<router pk>:<specialist pk or ->"); it is
    unique per study, so running the same read twice stores it once.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="diagnoses")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="diagnoses")
    route = models.CharField(max_length=20, choices=Modality.choices)
    route_probabilities = models.JSONField(default=dict)
    refused = models.BooleanField(default=False)
    refusal_code = models.CharField(max_length=20, choices=RefusalCode.choices, blank=True)
    refusal_reason = models.CharField(max_length=500, blank=True)
    modality_warning = models.CharField(max_length=500, blank=True)
    task = models.CharField(max_length=10, choices=Task.choices, blank=True)
    label = models.CharField(max_length=64, blank=True)
    probabilities = models.JSONField(default=dict, blank=True)
    # The specialist read the image but could not choose between ``candidates`` (most likely
    # first). ``label`` stays the top class for the record; it is never shown as the AI's result.
    indeterminate = models.BooleanField(default=False)
    candidates = models.JSONField(default=list, blank=True)
    ood = models.JSONField(
        default=dict, blank=True, help_text="Out-of-distribution check of the specialist (score, threshold, …)."
    )
    # Bits per grey value of the uploaded image (8 for ordinary PNG/JPEG, BitsStored for DICOM): one
    # of the input-drift signals (apps/diagnosis/drift.py); None on reads stored before it was kept.
    bit_depth = models.PositiveSmallIntegerField(null=True, blank=True)
    # The Grad-CAM overlay PNG (heatmap blended over the image, for the PDF), encrypted (sha256 of
    # the plaintext).
    overlay_name = models.CharField(max_length=300, blank=True)
    overlay_sha256 = models.CharField(max_length=64, blank=True)
    overlay_key_id = models.CharField(max_length=40, blank=True)
    # The Grad-CAM map alone, an 8-bit greyscale PNG at the network's resolution, encrypted: the
    # viewer colours and blends it over the image in the browser. Empty on reads stored before it.
    heatmap_name = models.CharField(max_length=300, blank=True)
    heatmap_sha256 = models.CharField(max_length=64, blank=True)
    heatmap_key_id = models.CharField(max_length=40, blank=True)
    roi_box = models.JSONField(null=True, blank=True, help_text="Region of interest [x0, y0, x1, y1], image pixels.")
    router_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    router_sha256 = models.CharField(max_length=64)
    specialist_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    specialist_sha256 = models.CharField(max_length=64, blank=True)
    versions_key = models.CharField(max_length=64)
    timings_ms = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[DiagnosisManager[Diagnosis]] = ScopedManager(DiagnosisManager, hospital="hospital")
    _default_manager: ClassVar[DiagnosisManager[Diagnosis]]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "diagnoses"
        constraints = [
            models.UniqueConstraint(fields=["study", "versions_key"], name="one_diagnosis_per_study_and_versions"),
        ]
        indexes = [models.Index(fields=["study", "-created_at"])]

    def __str__(self) -> str:
        if self.refused:
            outcome = "refused"
        elif self.indeterminate:
            outcome = f"indeterminate ({', '.join(self.candidates)})"
        else:
            outcome = self.label or "no label"
        return f"Diagnosis #{self.pk} of study #{self.study_id}: {outcome}"

    @property
    def confidence(self) -> float | None:
        """The probability of the predicted label (None when refused or indeterminate: an
        indeterminate read has no label to put a percentage on)."""
        if self.refused or self.indeterminate or not self.label:
            return None
        value = (self.probabilities or {}).get(self.label)
        return float(value) if value is not None else None

    @property
    def label_display(self) -> str:
        """The AI's result as people read it: "Viral pneumonia", or "Indeterminate: bacterial or
        viral pneumonia" when the specialist could not choose."""
        if self.indeterminate:
            return indeterminate_display(self.candidates)
        return label_display(self.label)

    @property
    def candidates_display(self) -> str:
        """ "bacterial and viral pneumonia", for "The AI could not decide between …" (empty unless
        indeterminate)."""
        return candidates_phrase(self.candidates, "and") if self.indeterminate else ""

    @property
    def sorted_probabilities(self) -> list[tuple[str, float]]:
        """(label, probability) for every class, in the model's label order when known."""
        probs = self.probabilities or {}
        order = list(self.specialist_version.labels) if self.specialist_version_id and self.specialist_version else []
        order += [k for k in probs if k not in order]
        return [(k, float(probs[k])) for k in order if k in probs]

    @property
    def probability_rows(self) -> list[dict[str, object]]:
        """One row per class for the probability bars: label, display name, percent, is the top
        class (none on an indeterminate read), is one of the indeterminate read's candidates."""
        rows = self.sorted_probabilities
        # An indeterminate read has no winner to highlight.
        top = None if self.indeterminate else max((p for _, p in rows), default=None)
        return [
            {
                "label": label,
                "display": label_display(label),
                "percent": round(p * 100, 1),
                "fraction": f"{max(0.0, min(p, 1.0)):.3f}",  # the bar: a <meter> value, no inline style
                "is_top": p == top,
                "is_candidate": self.indeterminate and label in (self.candidates or []),
            }
            for label, p in rows
        ]

    @property
    def route_confidence(self) -> float | None:
        value = (self.route_probabilities or {}).get(self.route)
        return float(value) if value is not None else None

    @property
    def has_overlay(self) -> bool:
        return bool(self.overlay_name)

    @property
    def has_heatmap(self) -> bool:
        return bool(self.heatmap_name)

    @property
    def total_ms(self) -> float | None:
        timings = self.timings_ms or {}
        if "total" in timings:
            return float(timings["total"])
        values = [float(v) for v in timings.values() if isinstance(v, int | float)]
        return sum(values) if values else None


class FeedbackAction(models.TextChoices):
    CONFIRM = "confirm", "Confirmed the AI label"
    CORRECT = "correct", "Corrected the AI label"


class FeedbackQuerySet(models.QuerySet["Feedback"]):
    def visible_to(self, tenant: Tenant) -> FeedbackQuerySet:
        """Those who see the AI read it is about."""
        return self.filter(clinical_rows(tenant, patient="diagnosis__study__patient"))


FeedbackManager = models.Manager.from_queryset(FeedbackQuerySet)


class Feedback(models.Model):
    """A doctor's verdict on an AI read: confirm its label, or correct it (with a comment).

    Corrections (and, on request, confirmations) are exported for retraining by
    ``manage.py export_feedback``.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="diagnosis_feedback")
    diagnosis = models.ForeignKey(Diagnosis, on_delete=models.CASCADE, related_name="feedback")
    doctor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="diagnosis_feedback")
    action = models.CharField(max_length=10, choices=FeedbackAction.choices)
    corrected_label = models.CharField(max_length=64, blank=True)
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[FeedbackManager[Feedback]] = ScopedManager(FeedbackManager, hospital="hospital")
    _default_manager: ClassVar[FeedbackManager[Feedback]]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "feedback"

    def __str__(self) -> str:
        if self.action == FeedbackAction.CORRECT:
            return f"{self.doctor} corrected diagnosis #{self.diagnosis_id} to {self.corrected_label}"
        return f"{self.doctor} confirmed diagnosis #{self.diagnosis_id}"

    @property
    def final_label(self) -> str:
        """The label the doctor stands behind."""
        return self.corrected_label if self.action == FeedbackAction.CORRECT else self.diagnosis.label


class DeploymentStage(models.TextChoices):
    """How far a hospital has taken a candidate version: shadow → A/B → active."""

    SHADOW = "shadow", "Shadow (read on every study, never shown)"
    AB = "ab", "A/B (reads a share of the studies)"
    ACTIVE = "active", "Active in this hospital"


class ModelDeployment(models.Model):
    """A registered version used by one hospital beside (or instead of) the platform's active one.

    * ``shadow``: it reads every study of its task after the live read is stored; the result is
      kept as a ``ShadowResult`` and never shown to doctors or patients, nor used in reports;
    * ``ab``: it gives the live read on ``rollout_percent`` of the hospital's studies of its task,
      chosen deterministically per study (``registry.choose_version``);
    * ``active``: it gives every live read of its task in this hospital.

    A hospital with any A/B or active deployment of a task uses only its own split for that task
    (the platform-wide ``ModelVersion.rollout_percent`` applies to the other hospitals). Changed
    only by ``apps/diagnosis/deployments.py`` (history in ``DeploymentChange``, audit events).
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="model_deployments")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    task = models.CharField(max_length=10, choices=Task.choices, help_text="The version's task (for the constraints).")
    stage = models.CharField(max_length=10, choices=DeploymentStage.choices)
    rollout_percent = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[models.Manager[ModelDeployment]] = ScopedManager(hospital="hospital")
    _default_manager: ClassVar[
        models.Manager[ModelDeployment]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["hospital", "task", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["hospital", "model_version"], name="one_deployment_per_hospital_version"),
            models.UniqueConstraint(
                fields=["hospital", "task"], condition=Q(stage="active"), name="one_hospital_active_version_per_task"
            ),
            models.UniqueConstraint(
                fields=["hospital", "task"], condition=Q(stage="shadow"), name="one_shadow_version_per_task"
            ),
            models.CheckConstraint(
                condition=Q(rollout_percent__lte=100), name="deployment_rollout_percent_at_most_100"
            ),
        ]

    def __str__(self) -> str:
        share = f" {self.rollout_percent}%" if self.stage == DeploymentStage.AB else ""
        return f"{self.model_version} at {self.hospital}: {self.get_stage_display()}{share}"


class DeploymentChange(models.Model):
    """One step in the history of a version in a hospital: who moved it from which stage (and
    share) to which, when, and why. An empty stage means "not deployed"."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="deployment_changes")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployment_changes")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    from_stage = models.CharField(max_length=10, choices=DeploymentStage.choices, blank=True)
    to_stage = models.CharField(max_length=10, choices=DeploymentStage.choices, blank=True)
    from_percent = models.PositiveSmallIntegerField(default=0)
    to_percent = models.PositiveSmallIntegerField(default=0)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[models.Manager[DeploymentChange]] = ScopedManager(hospital="hospital")
    _default_manager: ClassVar[
        models.Manager[DeploymentChange]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        before = self.get_from_stage_display() if self.from_stage else "not deployed"
        after = self.get_to_stage_display() if self.to_stage else "not deployed"
        return f"{self.model_version} at {self.hospital}: {before} → {after}"


class ShadowResultQuerySet(models.QuerySet["ShadowResult"]):
    def visible_to(self, tenant: Tenant) -> ShadowResultQuerySet:
        """The hospital's admins (the models dashboard); never doctors or patients."""
        return self.filter(hospital=tenant.hospital) if tenant.is_admin else self.none()


ShadowResultManager = models.Manager.from_queryset(ShadowResultQuerySet)


class ShadowResult(models.Model):
    """What a shadow version read on a study whose live read is ``diagnosis``. Never shown to
    doctors or patients and never used in reports: only the models dashboard compares it with
    the live read where a doctor gave a label."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="shadow_results")
    diagnosis = models.ForeignKey(Diagnosis, on_delete=models.CASCADE, related_name="shadow_results")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="shadow_results")
    route = models.CharField(max_length=20, choices=Modality.choices)
    refused = models.BooleanField(default=False)
    refusal_code = models.CharField(max_length=20, choices=RefusalCode.choices, blank=True)
    label = models.CharField(max_length=64, blank=True)
    probabilities = models.JSONField(default=dict, blank=True)
    indeterminate = models.BooleanField(default=False)
    candidates = models.JSONField(default=list, blank=True)
    ood = models.JSONField(default=dict, blank=True)
    timings_ms = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[ShadowResultManager[ShadowResult]] = ScopedManager(ShadowResultManager, hospital="hospital")
    _default_manager: ClassVar[
        ShadowResultManager[ShadowResult]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["diagnosis", "model_version"], name="one_shadow_result_per_version"),
        ]

    def __str__(self) -> str:
        outcome = "refused" if self.refused else (self.label or "no label")
        return f"Shadow read of diagnosis #{self.diagnosis_id} by {self.model_version}: {outcome}"


class PerformanceArm(models.TextChoices):
    LIVE = "live", "Live (shown to doctors)"
    SHADOW = "shadow", "Shadow (never shown)"


class VersionPerformance(models.Model):
    """How one model version did in one hospital during one week (Monday to Sunday, UTC, by the
    day the image was read), measured against the doctors' feedback.

    A summary table, written only by the scheduled task ``diagnosis.summarize_performance``
    (``apps/diagnosis/performance.py``) and read by the models dashboard: no page view ever
    aggregates diagnoses. Every figure is a count or a histogram, so weeks add up to any longer
    period; rates and their Wilson intervals are computed from the sums.

    ``arm`` is ``live`` for reads doctors saw and ``shadow`` for a shadow version's results on
    the same studies (``ShadowResult``). Router rows count reads, refusals and latency only.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="version_performance")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="performance")
    arm = models.CharField(max_length=10, choices=PerformanceArm.choices, default=PerformanceArm.LIVE)
    week = models.DateField(help_text="Monday of the week (UTC).")
    reads = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    indeterminate = models.PositiveIntegerField(default=0)
    reviewed = models.PositiveIntegerField(default=0, help_text="Reads a doctor confirmed or corrected.")
    reviewed_determinate = models.PositiveIntegerField(
        default=0, help_text="Reviewed reads that named a label (the denominator of agreement)."
    )
    agreed = models.PositiveIntegerField(default=0, help_text="Reviewed reads whose label the doctor kept.")
    confusion = models.JSONField(
        default=dict, blank=True, help_text='{AI label (or "indeterminate"): {doctor label: count}}.'
    )
    calibration = models.JSONField(
        default=list, blank=True, help_text="Per confidence bin: [reads, sum of confidence, reads the doctor kept]."
    )
    latency_histogram = models.JSONField(
        default=list, blank=True, help_text="Reads per latency bin (edges in performance.LATENCY_EDGES_MS)."
    )
    paired = models.JSONField(
        default=dict,
        blank=True,
        help_text="Shadow rows, on studies a doctor labelled: who matched the doctor "
        "(both, shadow_only, live_only, neither).",
    )
    computed_at = models.DateTimeField()

    objects: ClassVar[models.Manager[VersionPerformance]] = ScopedManager(hospital="hospital")
    _default_manager: ClassVar[
        models.Manager[VersionPerformance]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["hospital", "model_version", "arm", "week"]
        verbose_name_plural = "version performance"
        constraints = [
            models.UniqueConstraint(
                fields=["hospital", "model_version", "arm", "week"], name="one_performance_row_per_week"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_version} at {self.hospital} ({self.arm}), week of {self.week}"


class DriftSignal(models.TextChoices):
    """What the daily drift check watches (definitions and thresholds: apps/diagnosis/drift.py,
    docs/LEARNING_LOOP.md)."""

    CLASS_MIX = "class_mix", "Mix of AI labels against the training data"
    CONFIDENCE = "confidence", "Distribution of the AI's confidence"
    DISAGREEMENT = "disagreement", "Doctors' disagreement with the AI"
    OOD_RATE = "ood_rate", "Images unlike the training images"
    REFUSAL_RATE = "refusal_rate", "Images the AI refused"
    IMAGE_SIZE = "image_size", "Image size"
    BIT_DEPTH = "bit_depth", "Bit depth"
    MODALITY_TAGS = "modality_tags", "DICOM modality tags"


class DriftCheck(models.Model):
    """One drift signal of one hospital and task, computed by the daily task for the seven days
    before ``day``: its value, the threshold it is compared with, how many reads it rests on and
    what it was compared against. ``value`` is None when there was too little data."""

    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="drift_checks")
    task = models.CharField(max_length=10, choices=Task.choices)
    signal = models.CharField(max_length=20, choices=DriftSignal.choices)
    day = models.DateField(help_text="The check covers the seven days before this day (UTC).")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, null=True, blank=True, related_name="drift_checks"
    )
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    n = models.PositiveIntegerField(default=0, help_text="Reads (or reviewed reads) in the window.")
    reference = models.CharField(max_length=200, blank=True, help_text="What the window was compared against.")
    details = models.JSONField(default=dict, blank=True)
    crossed = models.BooleanField(default=False)
    computed_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[models.Manager[DriftCheck]] = ScopedManager(hospital="hospital")
    _default_manager: ClassVar[models.Manager[DriftCheck]]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["hospital", "task", "signal", "day"]
        constraints = [
            models.UniqueConstraint(fields=["hospital", "task", "signal", "day"], name="one_drift_check_per_day"),
        ]

    def __str__(self) -> str:
        value = "not enough data" if self.value is None else f"{self.value:.3f} (threshold {self.threshold:g})"
        return f"{self.get_signal_display()}, {self.task} at {self.hospital} on {self.day}: {value}"


class DriftAlert(models.Model):
    """A drift signal crossed its threshold. The hospital admins are notified once; the models
    dashboard shows the alert until someone acknowledges it. ``cleared_at`` is set when the
    signal is back under its threshold: only then can the same signal raise a new alert."""

    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="drift_alerts")
    task = models.CharField(max_length=10, choices=Task.choices)
    signal = models.CharField(max_length=20, choices=DriftSignal.choices)
    check_row = models.ForeignKey(DriftCheck, on_delete=models.SET_NULL, null=True, related_name="alerts")
    value = models.FloatField()
    threshold = models.FloatField()
    message = models.CharField(max_length=500)
    opened_at = models.DateTimeField(auto_now_add=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    acknowledgement = models.CharField(max_length=500, blank=True, help_text="What was done about it.")

    objects: ClassVar[models.Manager[DriftAlert]] = ScopedManager(hospital="hospital")
    _default_manager: ClassVar[models.Manager[DriftAlert]]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["hospital", "task", "signal"],
                condition=Q(cleared_at__isnull=True),
                name="one_uncleared_drift_alert_per_signal",
            ),
        ]

    def __str__(self) -> str:
        return f"Drift alert at {self.hospital}: {self.message}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


#: The specialists' classes that mean "no finding" (the worklist's triage order puts the others first).
NO_FINDING_LABELS = ("normal", "no_tumor")

#: How people read the model cards' machine labels, where the plain rewrite is not enough.
LABEL_NAMES = {"no_tumor": "No tumour", "pituitary": "Pituitary tumour"}


def label_display(label: str) -> str:
    """``bacterial_pneumonia`` → ``Bacterial pneumonia`` (labels are machine names in the cards)."""
    if label in LABEL_NAMES:
        return LABEL_NAMES[label]
    text = (label or "").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def candidates_phrase(candidates: list[str], conjunction: str = "or") -> str:
    """The classes an indeterminate read hesitates between, in running text:
    ``["bacterial_pneumonia", "viral_pneumonia"]`` → "bacterial or viral pneumonia",
    ``["normal", "bacterial_pneumonia"]`` → "normal or bacterial pneumonia",
    ``["glioma", "meningioma", "pituitary"]`` → "glioma, meningioma or pituitary tumour".

    Names are lower-cased at their first letter only; a last word every name shares is said once
    ("bacterial or viral pneumonia"), unless that would leave a bare "no" ("no tumour or
    pituitary tumour" stays as it is). ``conjunction`` is "or" or "and" ("between bacterial and
    viral pneumonia").
    """
    names = [_lower_first(label_display(str(code))) for code in candidates if code]
    if not names:
        return ""
    words = [name.split(" ") for name in names]
    shared = words[0][-1]
    if (
        len(names) > 1
        and all(len(w) > 1 and w[-1] == shared for w in words)
        and not any(w[0] in {"no", "not"} and len(w) == 2 for w in words)
    ):
        heads = [" ".join(w[:-1]) for w in words]
        return f"{_join(heads, conjunction)} {shared}"
    return _join(names, conjunction)


def indeterminate_display(candidates: list[str]) -> str:
    """The headline of an indeterminate AI read: "Indeterminate: bacterial or viral pneumonia".
    The one place this wording is built (the study page, review screen, PDF, API, timeline and
    notifications all use it)."""
    phrase = candidates_phrase(candidates)
    return f"Indeterminate: {phrase}" if phrase else "Indeterminate"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _join(items: list[str], conjunction: str) -> str:
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
