"""Second factor (issue 8): TOTP with django-otp and recovery codes, required for hospital admins,
platform staff and /admin/, per hospital for doctors; and the fresh re-authentication that signing
and amending a report need. Through the real pages (django-axes in the loop)."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.contrib import admin
from django.urls import reverse
from django_otp.admin import OTPAdminSite
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_scopes import scopes_disabled

from apps.accounts import reauth, second_factor, tokens
from apps.accounts.models import AuditEvent
from apps.accounts.tenancy import session_user
from apps.reports.models import Report, ReportStatus
from tests.auth import Client, authenticator_for, totp_code
from tests.factories import TEST_PASSWORD, UserFactory, make_study

IP = "198.51.100.20"


def log_in(client, user, next_url: str = ""):
    data = {"username": user.email, "password": TEST_PASSWORD}
    if next_url:
        data["next"] = next_url
    return client.post(reverse("accounts:login"), data, REMOTE_ADDR=IP)


def events(action: str) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def let_time_pass(user) -> None:
    """django-otp makes a device wait after a wrong code (1 s, then doubling): move that wait into
    the past, as if the person took a moment before typing the right code."""
    from django.utils import timezone

    TOTPDevice.objects.filter(user=user).update(throttling_failure_timestamp=timezone.now() - dt.timedelta(hours=1))


def caseload(world) -> str:
    return reverse("studies:caseload", args=[world.a.slug])


# --- policy ---------------------------------------------------------------------------------------


def test_who_must_use_a_second_factor(world):
    staff = UserFactory(email="staff@imagemedix.example", is_staff=True)
    assert second_factor.required_for(world.carol)  # hospital admin
    assert second_factor.required_for(staff)
    assert not second_factor.required_for(world.alice)  # doctor, hospital A does not require it
    assert not second_factor.required_for(world.paul)  # patients never must
    world.a.require_doctor_2fa = True
    world.a.save()
    assert second_factor.required_for(world.alice) and second_factor.required_for(world.bob)
    assert not second_factor.required_for(world.dora)  # hospital B's policy is its own
    assert not second_factor.required_for(world.paul)


# --- signing in -----------------------------------------------------------------------------------


def test_hospital_admin_sets_up_an_authenticator_at_first_login(client, world):
    response = log_in(client, world.carol, next_url=caseload(world))
    setup = reverse("accounts:two_factor_setup")
    assert response.status_code == 302 and response["Location"].startswith(setup)
    # Half signed in: every page sends her back, the API (browser session) says why.
    page = client.get(caseload(world))
    assert page.status_code == 302 and page["Location"].startswith(setup)
    api = client.get(reverse("api:patient-list", args=[world.a.slug]))
    assert api.status_code == 403 and "authenticator" in api.json()["detail"]

    form = client.get(response["Location"])
    assert form.status_code == 200 and form["Cache-Control"] == "no-store"
    body = form.content.decode()
    assert "<svg" in body and 'role="img"' in body and "enter a setup key" in body
    device = TOTPDevice.objects.get(user=world.carol, confirmed=False)
    wrong = client.post(response["Location"], {"code": "000000"})
    assert wrong.status_code == 400 and "not right" in wrong.content.decode()
    let_time_pass(world.carol)

    done = client.post(response["Location"], {"code": totp_code(device)})
    assert done.status_code == 200 and done["Cache-Control"] == "no-store"
    codes = done.context["codes"]
    assert len(codes) == second_factor.RECOVERY_CODE_COUNT and all(c in done.content.decode() for c in codes)
    assert "shown only once" in done.content.decode()
    assert done.context["next"] == caseload(world)
    device.refresh_from_db()
    assert device.confirmed
    assert client.get(caseload(world)).status_code == 200
    assert [e.actor for e in events("auth.second_factor_enrolled")] == [world.carol]


def test_login_asks_for_the_code_of_an_enrolled_user(client, world):
    device = authenticator_for(world.carol)
    response = log_in(client, world.carol, next_url=caseload(world))
    verify = reverse("accounts:two_factor_verify")
    assert response.status_code == 302 and response["Location"].startswith(verify)
    wrong = client.post(response["Location"], {"code": "123456"})
    assert wrong.status_code == 400 and "not right" in wrong.content.decode()
    assert events("auth.second_factor_failed")[-1].actor == world.carol
    assert client.get(caseload(world)).status_code == 302
    let_time_pass(world.carol)

    right = client.post(response["Location"], {"code": totp_code(device)})
    assert right.status_code == 302 and right["Location"] == caseload(world)
    assert client.get(caseload(world)).status_code == 200
    assert events("auth.second_factor")[-1].detail["method"] == "authenticator"


def test_a_code_works_once(world):
    device = authenticator_for(world.carol)
    first, second = Client(), Client()
    code = totp_code(device)
    log_in(first, world.carol)
    assert first.post(reverse("accounts:two_factor_verify"), {"code": code}).status_code == 302
    log_in(second, world.carol)
    assert second.post(reverse("accounts:two_factor_verify"), {"code": code}).status_code == 400
    let_time_pass(world.carol)
    # The next code (the app shows it 30 s later) is accepted.
    assert (
        second.post(reverse("accounts:two_factor_verify"), {"code": totp_code(device, steps_ahead=1)}).status_code
        == 302
    )


def test_recovery_code_signs_in_once(client, world):
    authenticator_for(world.carol)
    codes = second_factor.new_recovery_codes(world.carol)
    log_in(client, world.carol)
    response = client.post(reverse("accounts:two_factor_verify"), {"code": codes[0].upper()[:4] + " " + codes[0][4:]})
    assert response.status_code == 302
    assert events("auth.second_factor")[-1].detail["method"] == "recovery_code"
    assert second_factor.recovery_codes_left(world.carol) == len(codes) - 1
    again = Client()
    log_in(again, world.carol)
    assert again.post(reverse("accounts:two_factor_verify"), {"code": codes[0]}).status_code == 400


def test_wrong_codes_are_throttled(client, world):
    device = authenticator_for(world.carol)
    log_in(client, world.carol)
    for _ in range(3):
        client.post(reverse("accounts:two_factor_verify"), {"code": "000000"})
    response = client.post(reverse("accounts:two_factor_verify"), {"code": totp_code(device)})
    assert response.status_code == 400
    assert re.search(r"wait \d+ seconds", response.content.decode())


def test_doctor_needs_a_code_only_where_the_hospital_asks(client, world):
    response = log_in(client, world.alice, next_url=caseload(world))
    assert response["Location"] == caseload(world)  # hospital A does not require it
    client.logout()
    world.a.require_doctor_2fa = True
    world.a.save()
    response = log_in(client, world.alice, next_url=caseload(world))
    assert response["Location"].startswith(reverse("accounts:two_factor_setup"))


def test_policy_switched_on_mid_session_holds_the_doctor_at_the_door(client, world):
    log_in(client, world.alice)
    assert client.get(caseload(world)).status_code == 200
    world.a.require_doctor_2fa = True
    world.a.save()
    response = client.get(caseload(world))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:two_factor_setup"))


def test_anyone_may_enrol_and_is_then_always_asked(client, world):
    device = authenticator_for(world.paul)  # a patient who chose to turn it on
    response = log_in(client, world.paul)
    assert response["Location"].startswith(reverse("accounts:two_factor_verify"))
    client.post(response["Location"], {"code": totp_code(device)})
    # Not required for patients: they may turn it off again.
    assert client.post(reverse("accounts:two_factor_remove")).status_code == 302
    assert second_factor.authenticator(world.paul) is None
    assert events("auth.second_factor_removed")[-1].actor == world.paul


def test_required_second_factor_cannot_be_turned_off(client, world):
    client.force_login(world.carol)
    response = client.post(reverse("accounts:two_factor_remove"), follow=True)
    assert "cannot be turned off" in response.content.decode()
    assert second_factor.authenticator(world.carol) is not None


def test_password_alone_cannot_replace_the_authenticator(client, world):
    device = authenticator_for(world.carol)
    log_in(client, world.carol)
    response = client.get(reverse("accounts:two_factor_setup"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:two_factor_verify"))
    assert client.post(reverse("accounts:two_factor_setup"), {"code": "123456"}).status_code == 302
    assert list(TOTPDevice.objects.filter(user=world.carol)) == [device]


def test_new_recovery_codes_replace_the_old(client, world):
    client.force_login(world.carol)
    old = second_factor.new_recovery_codes(world.carol)
    response = client.post(reverse("accounts:recovery_codes_new"))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    new = response.context["codes"]
    assert not StaticToken.objects.filter(token__in=old).exists()
    assert StaticToken.objects.filter(token__in=new).count() == len(new)


def test_security_page_shows_the_state(client, world):
    client.force_login(world.carol)
    page = client.get(reverse("accounts:security")).content.decode()
    assert "On." in page and "cannot be turned off" in page and reverse("accounts:api_tokens") in page
    client.force_login(world.alice)
    page = client.get(reverse("accounts:security")).content.decode()
    assert "Off." in page and reverse("accounts:two_factor_setup") in page


def test_websocket_session_needs_the_second_factor_too(world):
    """Sockets read the session with ``session_user``: a half-signed-in admin gets nothing."""
    half, full = Client(), Client()
    half.force_login(world.carol, second_factor=False)
    full.force_login(world.carol)
    assert session_user(half.session.session_key) is None
    assert session_user(full.session.session_key) == world.carol


def test_api_tokens_need_a_verified_session(world):
    client = Client()
    client.force_login(world.carol, second_factor=False)
    assert client.post(reverse("accounts:api_tokens"), {"name": "x"}).status_code == 302
    client.force_login(world.carol)
    assert client.post(reverse("accounts:api_tokens"), {"name": "x"}).status_code == 200


def test_hospital_admin_sets_the_doctors_policy_on_the_members_page(client, world):
    client.force_login(world.carol)
    url = reverse("studies:second_factor_policy", args=[world.a.slug])
    assert client.post(url, {"require_doctor_2fa": "on"}).status_code == 302
    world.a.refresh_from_db()
    assert world.a.require_doctor_2fa and second_factor.required_for(world.alice)
    assert (
        'name="require_doctor_2fa" checked'
        in client.get(reverse("studies:members", args=[world.a.slug])).content.decode()
    )
    client.post(url, {})
    world.a.refresh_from_db()
    assert not world.a.require_doctor_2fa
    assert [e.detail["require_doctor_2fa"] for e in events("hospital.second_factor_policy")] == [True, False]
    assert all(e.actor == world.carol and e.hospital == world.a for e in events("hospital.second_factor_policy"))
    client.force_login(world.alice)
    assert client.post(url, {"require_doctor_2fa": "on"}).status_code == 403  # doctors cannot


# --- the Django admin -----------------------------------------------------------------------------


def test_admin_is_an_otp_admin_site_with_the_portal_login(client, world):
    assert isinstance(admin.site, OTPAdminSite)
    response = client.get(reverse("admin:login") + "?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


def test_admin_needs_a_verified_staff_session(client, world):
    staff = UserFactory(email="root@imagemedix.example", is_staff=True, is_superuser=True)
    client.force_login(staff, second_factor=False)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:two_factor_setup"))
    client.force_login(staff)
    assert client.get(reverse("admin:index")).status_code == 200


def test_hospital_policy_change_in_the_admin_is_audited(client, world):
    staff = UserFactory(email="root@imagemedix.example", is_staff=True, is_superuser=True)
    client.force_login(staff)
    url = reverse("admin:accounts_hospital_change", args=[world.a.pk])
    form = {"name": world.a.name, "slug": world.a.slug, "address": "", "is_active": "on", "require_doctor_2fa": "on"}
    assert client.post(url, form).status_code == 302
    world.a.refresh_from_db()
    assert world.a.require_doctor_2fa
    event = events("hospital.second_factor_policy")[-1]
    assert event.hospital == world.a and event.actor == staff and event.detail["require_doctor_2fa"] is True


# --- re-authentication before a signature -------------------------------------------------------


@pytest.fixture
def study(world):
    return make_study(world.paul_record, world.alice)


def review_url(world, study) -> str:
    return reverse("reports:review", args=[world.a.slug, study.pk])


REPORT = {"findings": "Clear lungs.", "impression": "Normal study.", "final_label": "normal", "action": "sign"}


def current_report(study) -> Report:
    with scopes_disabled():
        return Report.objects.get(study=study)


def sign_url(world, study) -> str:
    return reverse("reports:sign", args=[world.a.slug, current_report(study).pk])


def test_signing_asks_for_the_password_and_keeps_the_draft(client, world, study):
    client.force_login(world.alice)
    saved = client.post(review_url(world, study), REPORT)
    assert saved.status_code == 302 and saved["Location"] == sign_url(world, study)
    report = current_report(study)
    assert report.status == ReportStatus.DRAFT and report.findings == "Clear lungs."  # nothing typed is lost
    response = client.get(saved["Location"])
    confirm = reverse("accounts:reauthenticate")
    assert response.status_code == 302 and response["Location"].startswith(confirm)

    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "sign a report" in page.content.decode() and 'name="code"' not in page.content.decode()
    wrong = client.post(response["Location"], {"password": "not-my-password"})
    assert wrong.status_code == 400 and "not right" in wrong.content.decode()
    assert events("auth.reauthenticate_failed")[-1].actor == world.alice

    back = client.post(response["Location"], {"password": TEST_PASSWORD})
    assert back.status_code == 302 and back["Location"] == sign_url(world, study)  # the signature page
    page = client.get(back["Location"]).content.decode()
    assert "Clear lungs." in page and "Confirm and sign" in page
    token = re.search(r'name="draft" value="([^"]+)"', page).group(1)
    assert client.post(sign_url(world, study), {"draft": token}).status_code == 302
    assert current_report(study).status == ReportStatus.SIGNED
    assert events("auth.reauthenticate")[-1].detail["purpose"] == "sign"


def test_reauthentication_expires_after_the_window(client, world, study, settings):
    settings.REAUTH_MAX_AGE_MINUTES = 5
    client.force_login(world.alice)
    session = client.session
    session[reauth.SESSION_KEY] = time.time() - 5 * 60 - 1
    session.save()
    client.post(review_url(world, study), REPORT)
    response = client.post(sign_url(world, study), {"draft": "any"})
    assert response["Location"].startswith(reverse("accounts:reauthenticate"))
    assert current_report(study).status == ReportStatus.DRAFT


def test_reauthentication_needs_the_code_of_an_enrolled_doctor(client, world, study):
    device = authenticator_for(world.alice)
    client.force_login(world.alice)
    confirm = reverse("accounts:reauthenticate") + "?for=sign&next=" + review_url(world, study)
    assert 'name="code"' in client.get(confirm).content.decode()
    assert client.post(confirm, {"password": TEST_PASSWORD, "code": "000000"}).status_code == 400
    let_time_pass(world.alice)
    assert client.post(confirm, {"password": TEST_PASSWORD, "code": totp_code(device)}).status_code == 302
    assert time.time() - client.session[reauth.SESSION_KEY] < 5


def test_incomplete_report_says_what_is_missing_before_asking_for_the_password(client, world, study):
    client.force_login(world.alice)
    response = client.post(review_url(world, study), {**REPORT, "impression": ""})
    assert (
        response.status_code == 400 and "Impression: write your impression before signing." in response.content.decode()
    )


def test_amending_asks_for_the_password_too_and_keeps_the_reason(client, world):
    from tests.reports.helpers import signed_report

    signed = signed_report(world.paul_record, world.alice, with_pdf=False)
    client.force_login(world.alice)
    amend = reverse("reports:amend", args=[world.a.slug, signed.pk])
    response = client.post(amend, {"reason": "Wrong side recorded."})
    assert response["Location"].startswith(reverse("accounts:reauthenticate"))
    assert "for=amend" in response["Location"]
    with scopes_disabled():
        assert not Report.objects.filter(supersedes=signed).exists()
    client.confirm_identity()
    # Back on the review screen, the reason typed is still in the form.
    assert "Wrong side recorded." in client.get(review_url(world, signed.study)).content.decode()
    assert client.post(amend, {"reason": "Wrong side recorded."}).status_code == 302
    with scopes_disabled():
        assert Report.objects.get(supersedes=signed).amendment_reason == "Wrong side recorded."


def test_next_never_leaves_the_site(client, world):
    client.force_login(world.alice)
    response = client.post(
        reverse("accounts:reauthenticate") + "?next=https://evil.example/", {"password": TEST_PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == reverse("accounts:home")


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic Y2Fyb2w6eA==", "Bearer whatever", "Token"],
    ids=["no-header", "basic", "bearer", "empty-token"],
)
def test_a_half_signed_in_session_opens_no_api_whatever_header_it_adds(world, authorization):
    """An Authorization header that is not an API token must not let DRF fall back to the
    session: a password without the code opens nothing, on the API or DICOMweb."""
    client = Client()
    client.force_login(world.carol, second_factor=False)
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    api = client.get(reverse("api:patient-list", kwargs={"hospital_slug": world.a.slug}), **headers)
    assert api.status_code in (401, 403), api.content[:200]
    assert b"A-0001" not in api.content
    dicomweb = client.get(f"/dicomweb/h/{world.a.slug}/studies", **headers)
    assert dicomweb.status_code in (401, 403), dicomweb.content[:200]


def test_a_real_api_token_still_works_beside_a_half_signed_in_session(world):
    _, raw = tokens.create(world.carol)
    client = Client()
    client.force_login(world.carol, second_factor=False)
    response = client.get(
        reverse("api:patient-list", kwargs={"hospital_slug": world.a.slug}), HTTP_AUTHORIZATION=f"Token {raw}"
    )
    assert response.status_code == 200
    assert response.json()["count"] == 2
