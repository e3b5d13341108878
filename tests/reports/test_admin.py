"""The Django admin shows reports read-only, scoped to the hospital admin's hospitals."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from .helpers import signed_report

pytestmark = pytest.mark.django_db


def test_hospital_admin_sees_own_hospital_reports_read_only(client, world, paul_signed):
    bea_report = signed_report(world.bea_record, world.dora, with_pdf=False)
    with scopes_disabled():
        world.carol.is_staff = True
        world.carol.save()
    client.force_login(world.carol)
    listing = client.get(reverse("admin:reports_report_changelist"))
    assert listing.status_code == 200
    assert reverse("admin:reports_report_change", args=[paul_signed.pk]) in listing.content.decode()
    assert reverse("admin:reports_report_change", args=[bea_report.pk]) not in listing.content.decode()
    assert client.get(reverse("admin:reports_report_change", args=[bea_report.pk])).status_code in (302, 404)
    page = client.get(reverse("admin:reports_report_change", args=[paul_signed.pk]))
    assert page.status_code == 200 and b'name="findings"' not in page.content  # read-only
    assert client.get(reverse("admin:reports_report_add")).status_code == 403
