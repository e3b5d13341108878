"""Membership by invitation (issue 8, finding 6): the hospital admin types an e-mail address and an
invitation is e-mailed; the person accepts it signed in with that address's account, or creates
the account from it. The admin's page says the same whether or not an account exists, nobody
joins without accepting, and the platform superuser can never be attached to a hospital."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent, Invitation, Membership, Role, User
from apps.accounts.services import accept_invitation, invite, revoke_invitation
from tests.auth import Client
from tests.factories import TEST_PASSWORD, UserFactory

LINK = re.compile(r"https?://[^\s]+/invitations/([^/\s]+)/")


def members_url(world) -> str:
    return reverse("studies:members", args=[world.a.slug])


def events(action: str) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def token_from(message) -> str:
    found = LINK.search(message.body)
    assert found, message.body
    return found.group(1)


@pytest.fixture
def carol(client, world):
    client.force_login(world.carol)
    return client


def invite_through_the_page(carol, world, email, django_capture_on_commit_callbacks, role=Role.DOCTOR):
    with django_capture_on_commit_callbacks(execute=True):
        response = carol.post(members_url(world), {"email": email, "role": role}, follow=True)
    assert response.status_code == 200
    return response


# --- the admin's side ---------------------------------------------------------------------------------


def test_the_answer_is_the_same_whether_or_not_an_account_exists(carol, world, django_capture_on_commit_callbacks):
    """Dora has an account (in another hospital); nobody has the other address. Each invitation is
    sent from the same starting point (the earlier one withdrawn), and the two answers, redirect and
    page, differ only by the address typed and the invitation's id."""

    def answer(email):
        with django_capture_on_commit_callbacks(execute=True):
            posted = carol.post(members_url(world), {"email": email, "role": Role.DOCTOR})
        page = carol.get(posted["Location"]).content.decode().replace(email, "EMAIL")
        page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)
        page = re.sub(r"/invitations/\d+/", "/invitations/ID/", page)
        with scopes_disabled():
            revoke_invitation(Invitation.objects.get(email=email), actor=world.carol)
        return posted.status_code, posted["Location"], page

    existing, unknown = answer("dora@riverside.example"), answer("nobody@riverside.example")
    assert existing == unknown
    assert "An invitation to join as doctor was sent to EMAIL" in existing[2]
    # Both got the same e-mail; nobody joined.
    assert [m.to for m in mail.outbox] == [["dora@riverside.example"], ["nobody@riverside.example"]]
    assert (
        mail.outbox[0].body.replace("dora@riverside.example", "E").split("/invitations/")[0]
        == (mail.outbox[1].body.replace("nobody@riverside.example", "E").split("/invitations/")[0])
    )
    assert not Membership.objects.filter(user=world.dora, hospital=world.a).exists()
    assert not User.objects.filter(email="nobody@riverside.example").exists()
    sent = events("invitation.send")
    assert [e.detail["email"] for e in sent] == ["dora@riverside.example", "nobody@riverside.example"]
    assert all(e.actor == world.carol and e.hospital == world.a for e in sent)


def test_the_old_attach_by_email_path_is_gone(carol, world):
    """Posting the old form's fields (a name and a password) creates and attaches nobody."""
    carol.post(
        members_url(world),
        {"email": "dora@riverside.example", "role": Role.DOCTOR, "full_name": "X", "password": "A-long-Passphrase-9"},
    )
    assert not Membership.objects.filter(user=world.dora, hospital=world.a).exists()
    world.dora.refresh_from_db()
    assert world.dora.check_password(TEST_PASSWORD)


def test_the_email_holds_a_working_link_and_only_its_digest_is_stored(carol, world, django_capture_on_commit_callbacks):
    invite_through_the_page(carol, world, "newdoc@st-mary.example", django_capture_on_commit_callbacks)
    message = mail.outbox[-1]
    assert "St Mary's Hospital" in message.subject and "as doctor" in message.body
    token = token_from(message)
    with scopes_disabled():
        stored = Invitation.objects.get(email="newdoc@st-mary.example")
    assert token not in stored.token_digest and len(stored.token_digest) == 64
    assert stored.expires_at - stored.created_at == dt.timedelta(days=7)


def test_pending_invitations_are_listed_and_can_be_withdrawn(carol, world, django_capture_on_commit_callbacks):
    invite_through_the_page(carol, world, "newdoc@st-mary.example", django_capture_on_commit_callbacks)
    token = token_from(mail.outbox[-1])
    page = carol.get(members_url(world)).content.decode()
    assert "Invitations not yet accepted" in page and "newdoc@st-mary.example" in page
    with scopes_disabled():
        pending = Invitation.objects.get(email="newdoc@st-mary.example")
    response = carol.post(reverse("studies:invitation_revoke", args=[world.a.slug, pending.pk]))
    assert response.status_code == 302
    assert Client().get(reverse("accounts:invitation", args=[token])).status_code == 404
    assert events("invitation.revoke")[-1].detail["email"] == "newdoc@st-mary.example"
    assert carol.post(reverse("studies:invitation_revoke", args=[world.a.slug, pending.pk])).status_code == 404


def test_another_hospitals_invitation_cannot_be_withdrawn(carol, world):
    with scopes_disabled():
        theirs = invite(world.b, email="x@riverside.example", role=Role.DOCTOR, actor=None)
    assert carol.post(reverse("studies:invitation_revoke", args=[world.a.slug, theirs.pk])).status_code == 404


def test_a_new_invitation_replaces_the_pending_one(world):
    with scopes_disabled():
        first = invite(world.a, email="twice@example.org", role=Role.DOCTOR, actor=world.carol)
        second = invite(world.a, email="twice@example.org", role=Role.DOCTOR, actor=world.carol)
        first.refresh_from_db()
        assert first.status == "withdrawn" and second.status == "pending"


# --- the invited person's side ------------------------------------------------------------------------


def test_an_existing_account_accepts_while_signed_in(carol, world, django_capture_on_commit_callbacks):
    invite_through_the_page(carol, world, "dora@riverside.example", django_capture_on_commit_callbacks)
    link = reverse("accounts:invitation", args=[token_from(mail.outbox[-1])])
    anonymous = Client().get(link)
    assert anonymous.status_code == 200 and "Sign in to accept" in anonymous.content.decode()

    dora = Client()
    dora.force_login(world.dora)
    page = dora.get(link)
    assert page.status_code == 200 and "Accept the invitation" in page.content.decode()
    response = dora.post(link)
    assert response.status_code == 302 and response["Location"] == "/h/st-mary/"
    assert Membership.objects.filter(user=world.dora, hospital=world.a, role=Role.DOCTOR, is_active=True).exists()
    world.dora.refresh_from_db()
    assert world.dora.check_password(TEST_PASSWORD)  # her account is untouched
    event = events("invitation.accept")[-1]
    assert event.actor == world.dora and event.hospital == world.a
    assert dora.get(link).status_code == 404  # used once


def test_a_new_person_creates_their_account_from_the_invitation(carol, world, django_capture_on_commit_callbacks):
    invite_through_the_page(
        carol, world, "newadmin@st-mary.example", django_capture_on_commit_callbacks, role=Role.HOSPITAL_ADMIN
    )
    link = reverse("accounts:invitation", args=[token_from(mail.outbox[-1])])
    person = Client()
    weak = person.post(link, {"full_name": "Nia New", "password1": "short", "password2": "short"})
    assert weak.status_code == 400 and not User.objects.filter(email="newadmin@st-mary.example").exists()
    password = "A-long-Passphrase-9"
    response = person.post(link, {"full_name": "Nia New", "password1": password, "password2": password})
    assert response.status_code == 302
    user = User.objects.get(email="newadmin@st-mary.example")
    assert user.full_name == "Nia New" and user.check_password(password)
    assert Membership.objects.filter(user=user, hospital=world.a, role=Role.HOSPITAL_ADMIN).exists()
    # Signed in; as a hospital admin she sets up her second factor before anything else.
    nxt = person.get(response["Location"])
    assert nxt.status_code == 302 and nxt["Location"].startswith(reverse("accounts:two_factor_setup"))


def test_creating_an_account_for_an_address_that_has_one_is_refused(carol, world, django_capture_on_commit_callbacks):
    invite_through_the_page(carol, world, "dora@riverside.example", django_capture_on_commit_callbacks)
    link = reverse("accounts:invitation", args=[token_from(mail.outbox[-1])])
    password = "A-long-Passphrase-9"
    response = Client().post(link, {"full_name": "Mallory", "password1": password, "password2": password})
    assert response.status_code == 400 and "sign in to accept" in response.content.decode()
    world.dora.refresh_from_db()
    assert world.dora.check_password(TEST_PASSWORD) and world.dora.full_name == "Dr Dora Diaz"


def test_another_account_cannot_use_the_link(carol, world, django_capture_on_commit_callbacks):
    invite_through_the_page(carol, world, "dora@riverside.example", django_capture_on_commit_callbacks)
    link = reverse("accounts:invitation", args=[token_from(mail.outbox[-1])])
    bob = Client()
    bob.force_login(world.bob)
    assert bob.get(link).status_code == 403
    assert bob.post(link).status_code == 403
    assert not Membership.objects.filter(user=world.bob, hospital=world.a, role=Role.DOCTOR, is_active=False).exists()
    with scopes_disabled():
        assert Invitation.objects.get(email="dora@riverside.example").status == "pending"


def test_an_expired_link_says_so(world):
    with scopes_disabled():
        invitation = invite(world.a, email="late@example.org", role=Role.DOCTOR, actor=world.carol)
        Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    # The token is only in the e-mail; an unknown one reads the same as an expired one.
    response = Client().get(reverse("accounts:invitation", args=["x" * 43]))
    assert response.status_code == 404 and "not valid" in response.content.decode()


# --- the platform superuser ---------------------------------------------------------------------------


def test_the_superuser_can_never_accept_an_invitation(carol, world, django_capture_on_commit_callbacks):
    root = UserFactory(email="root@imagemedix.example", is_staff=True, is_superuser=True)
    invite_through_the_page(carol, world, root.email, django_capture_on_commit_callbacks)
    link = reverse("accounts:invitation", args=[token_from(mail.outbox[-1])])
    client = Client()
    client.force_login(root)
    response = client.post(link)
    assert response.status_code == 400 and "Platform administrator accounts cannot join" in response.content.decode()
    assert not Membership.objects.filter(user=root).exists()


def test_platform_staff_without_a_hospital_cannot_accept(world):
    staff = UserFactory(email="ops@imagemedix.example", is_staff=True)
    with scopes_disabled():
        invitation = invite(world.a, email=staff.email, role=Role.DOCTOR, actor=world.carol)
        with pytest.raises(ValidationError, match="Platform administrator"):
            accept_invitation(invitation, staff)


def test_the_superuser_is_never_a_member_whichever_path(world):
    root = UserFactory(email="root@imagemedix.example", is_staff=True, is_superuser=True)
    with pytest.raises(ValidationError, match="cannot be a member"):
        Membership.objects.create(user=root, hospital=world.a, role=Role.HOSPITAL_ADMIN)
    # A member cannot be made superuser in the admin either.
    admin = Client()
    admin.force_login(root)
    url = reverse("admin:accounts_user_change", args=[world.alice.pk])
    page = admin.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, list | tuple)}
    data.update({"is_superuser": "on", "is_active": "on", "email": world.alice.email, "date_joined_0": "2026-01-01"})
    data.update({"date_joined_1": "00:00:00", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"})
    response = admin.post(url, data)
    world.alice.refresh_from_db()
    assert not world.alice.is_superuser
    assert response.status_code == 200 and "cannot be platform administrators" in response.content.decode()
