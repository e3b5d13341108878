"""Who may use the integration endpoints and pages, built on ``apps.studies.access``.

* A DICOMweb request is made either by an **integration credential** (the hospital's PACS: it
  stores instances, and searches and retrieves every matched study of its own hospital) or by a
  **signed-in clinician** (searches and retrieves exactly the studies the pages show them:
  doctors their care team's patients, hospital admins every patient of the hospital).
* The credentials and the unmatched queue are the hospital admin's, and nobody else's.

Anything else answers 404, exactly like something that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.models import Hospital
from apps.accounts.tenancy import Tenant

from .models import DicomInstance, DicomStudy, IntegrationCredential


class CredentialDetail(TypedDict, total=False):
    """What an audit event of a DICOMweb request adds about its caller."""

    credential: str  # the credential's key id


@dataclass(frozen=True)
class Caller:
    """Who makes a DICOMweb request: an integration credential, or a signed-in member (``tenant``)."""

    hospital: Hospital
    credential: IntegrationCredential | None = None
    tenant: Tenant | None = None

    @property
    def actor(self) -> Any:
        """The person acting (None for a credential: the audit trail names the credential instead)."""
        return self.tenant.user if self.tenant is not None else None

    @property
    def audit_detail(self) -> CredentialDetail:
        return {"credential": self.credential.key_id} if self.credential is not None else {}


def visible_instances(caller: Caller) -> QuerySet[DicomInstance]:
    """Instances the caller may search and retrieve: those filed under a patient (never the
    unmatched queue), and of those only the ones on the caller's pages for a person."""
    if caller.credential is not None:
        return DicomInstance.objects.filter(hospital=caller.hospital, study__isnull=False)
    if caller.tenant is None:
        return DicomInstance.objects.none()
    return DicomInstance.objects.visible_to(caller.tenant).filter(study__isnull=False)


def credentials(tenant: Tenant) -> QuerySet[IntegrationCredential]:
    if not tenant.is_admin:
        return IntegrationCredential.objects.none()
    return IntegrationCredential.objects.filter(hospital=tenant.hospital)


def get_credential(tenant: Tenant, pk: int) -> IntegrationCredential:
    credential = credentials(tenant).filter(pk=pk).first()
    if credential is None:
        raise Http404("No such credential.")
    return credential


def unmatched_studies(tenant: Tenant) -> QuerySet[DicomStudy]:
    """Studies waiting for a hospital admin to say whose they are."""
    if not tenant.is_admin:
        return DicomStudy.objects.none()
    return DicomStudy.objects.visible_to(tenant).filter(patient__isnull=True)


def get_unmatched_study(tenant: Tenant, pk: int) -> DicomStudy:
    dicom_study = unmatched_studies(tenant).filter(pk=pk).first()
    if dicom_study is None:
        raise Http404("No such study in the unmatched queue.")
    return dicom_study
