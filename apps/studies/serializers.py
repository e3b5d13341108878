"""Serializers of the REST API v1 (apps/studies/api.py). Output only exposes what the pages
show a clinician; the patient's own login link and the storage details of files are left out."""

from __future__ import annotations

import logging
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.diagnosis.services import diagnosis_summary, newest_diagnosis

from .models import Patient, Sex, Study
from .params import MAX_ID_DIGITS

log = logging.getLogger(__name__)


class PatientSerializer(serializers.ModelSerializer):
    full_name = serializers.CharField(read_only=True)

    class Meta:
        model = Patient
        fields = ["id", "mrn", "given_name", "family_name", "full_name", "birth_date", "sex", "created_at"]
        read_only_fields = ["id", "full_name", "created_at"]


class PatientCreateSerializer(serializers.Serializer):
    """A new patient record of the hospital in the URL. The MRN must be new there."""

    mrn = serializers.CharField(max_length=40)
    given_name = serializers.CharField(max_length=100)
    family_name = serializers.CharField(max_length=100)
    birth_date = serializers.DateField()
    sex = serializers.ChoiceField(choices=Sex.choices, default=Sex.UNKNOWN)

    def validate_mrn(self, value: str) -> str:
        value = value.strip()
        hospital = self.context["tenant"].hospital
        if Patient.objects.filter(hospital=hospital, mrn=value).exists():
            raise serializers.ValidationError("A patient with this MRN already exists in this hospital.")
        return value


class StudySerializer(serializers.ModelSerializer):
    patient_mrn = serializers.CharField(source="patient.mrn", read_only=True)
    patient_name = serializers.CharField(source="patient.full_name", read_only=True)
    uploaded_by = serializers.SerializerMethodField()
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    modality_display = serializers.CharField(source="get_modality_display", read_only=True)
    diagnosis = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id",
            "patient",
            "patient_mrn",
            "patient_name",
            "uploaded_by",
            "created_at",
            "updated_at",
            "status",
            "status_display",
            "status_message",
            "modality",
            "modality_display",
            "source_format",
            "original_filename",
            "width",
            "height",
            "dicom_modality",
            "file_sha256",
            "file_size",
            "diagnosis",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.STR)
    def get_uploaded_by(self, study: Study) -> str:
        user = study.uploaded_by
        if user is None:
            return ""
        return user.display_name

    @extend_schema_field({"type": "object", "nullable": True, "additionalProperties": True})
    def get_diagnosis(self, study: Study) -> dict[str, Any] | None:
        """The AI read's summary (``apps.diagnosis.services.diagnosis_summary``): label,
        ``label_display`` ("Indeterminate: …" when the AI could not choose), ``confidence`` (null
        when refused or indeterminate), ``indeterminate``, ``candidates``, ``refusal_code``…"""
        try:
            # List views prefetch the diagnoses (diagnoses_prefetch), so a page costs one query, not one per row.
            diagnosis = newest_diagnosis(study)
            return diagnosis_summary(study, diagnosis) if diagnosis is not None else None
        except Exception:  # noqa: BLE001 - never let a summary error become a 500 in a listing
            log.exception("diagnosis summary failed for study %s", study.pk)
            return None


class StudyUploadSerializer(serializers.Serializer):
    """Multipart body of ``POST studies/``: the image file and the patient it belongs to (an id
    from your caseload). PNG, JPEG or DICOM, decided by the file's content."""

    patient = serializers.IntegerField(
        min_value=1, max_value=10**MAX_ID_DIGITS - 1, help_text="Id of a patient in your caseload."
    )
    file = serializers.FileField(help_text="PNG, JPEG or DICOM image, up to the upload size limit.")


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, in words for a clinician.")
