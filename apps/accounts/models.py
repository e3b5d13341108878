"""People, hospitals (the tenants), memberships and the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django_scopes import ScopedManager
from knox.models import AbstractAuthToken

from .signals import announce_access_change

if TYPE_CHECKING:
    from .tenancy import Tenant


class UserManager(BaseUserManager["User"]):
    """Creates users identified by e-mail address (there is no username)."""

    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(**{f"{self.model.USERNAME_FIELD}__iexact": username})


#: Account flags whose changes are audited (``user.staff_granted``, ``user.deactivate``, ...).
ACCOUNT_FLAGS = ("is_active", "is_staff", "is_superuser")


class User(AbstractUser):
    """A person who logs in: doctor, patient, hospital admin or platform admin.

    Logs in with an e-mail address. What they may do in a hospital comes from their
    ``Membership`` rows there, never from this row alone.
    """

    username = None  # type: ignore[assignment]  # drops AbstractUser's field: we log in with the e-mail
    email = models.EmailField("e-mail address", unique=True)
    full_name = models.CharField(max_length=200, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]  # not Django's UserManager: no username

    if TYPE_CHECKING:

        def is_verified(self) -> bool:
            """Whether this session passed the second factor: set on ``request.user`` by
            django-otp's ``OTPMiddleware``."""
            ...

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.full_name or self.email

    @property
    def display_name(self) -> str:
        return self.full_name or self.email

    def clean(self) -> None:
        super().clean()
        if self.is_superuser and self.pk and self.memberships.filter(is_active=True).exists():
            raise ValidationError({"is_superuser": MEMBER_NOT_A_PLATFORM_ADMIN})

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; when the password changed or the account was switched off, tell the realtime side
        on commit, so the user's open WebSockets re-validate (and those of other sessions close).
        Compared with the stored row, so every path counts: the password pages, a reset, the
        admin, ``changepassword``, ``createsuperuser``, the shell. Audited the same way: a new
        password set with ``set_password`` (``auth.password_change``; the re-hash of the same
        password on login is not one), staff or superuser status granted or taken away, and the
        account switched off or on (``user.*``, see ``audit.record_account_changes``).

        A new password (or none: an unusable one) and switching the account off also revoke
        every API token of the account."""
        update_fields = kwargs.get("update_fields")
        watched = {"password", *ACCOUNT_FLAGS}
        stored = None
        if not self._state.adding and (update_fields is None or watched & set(update_fields)):
            stored = type(self).objects.filter(pk=self.pk).values(*watched).first()
        adding = self._state.adding
        access_may_end = password_changed = credentials_gone = False
        if stored is not None:
            hash_changed = stored["password"] != self.password
            deactivated = stored["is_active"] and not self.is_active
            access_may_end = hash_changed or deactivated
            # ``set_password`` keeps the raw password until the save; the login re-hash clears it.
            password_changed = hash_changed and self._password is not None  # type: ignore[attr-defined]  # set_password's; not in django-stubs
            credentials_gone = password_changed or deactivated or (hash_changed and not self.has_usable_password())
        super().save(*args, **kwargs)
        from . import audit  # audit imports this module

        if password_changed:
            audit.record_password_change(self)
        if stored is not None or adding:
            before = stored or {"is_active": self.is_active, "is_staff": False, "is_superuser": False}
            audit.record_account_changes(self, before)
        if credentials_gone:
            from . import tokens  # tokens imports this module

            tokens.revoke_all(self, reason="password_change" if password_changed else "account_off")
        if access_may_end:
            announce_access_change(self.pk, "credentials")


class Hospital(models.Model):
    """A tenant. Every tenant-owned row points at one, and URLs carry its slug (/h/<slug>/)."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    address = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField(default=True)
    require_doctor_2fa = models.BooleanField(
        "doctors must use two-step verification",
        default=False,
        help_text="Doctors of this hospital then sign in with a code from an authenticator app too. "
        "Hospital admins and platform staff always do.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


PLATFORM_ADMIN_NOT_A_MEMBER = "A platform administrator (superuser) cannot be a member of a hospital."
MEMBER_NOT_A_PLATFORM_ADMIN = "Members of a hospital cannot be platform administrators: remove their memberships first."


class Role(models.TextChoices):
    HOSPITAL_ADMIN = "hospital_admin", "Hospital admin"
    DOCTOR = "doctor", "Doctor"
    PATIENT = "patient", "Patient"


class MembershipQuerySet(models.QuerySet["Membership"]):
    def visible_to(self, tenant: Tenant) -> MembershipQuerySet:
        """A hospital's admins see its memberships (the people and roles page); nobody else does."""
        return self.filter(hospital=tenant.hospital) if tenant.is_admin else self.none()


MembershipManager = models.Manager.from_queryset(MembershipQuerySet)


class Membership(models.Model):
    """A user's role in one hospital. One person may hold roles in several hospitals.

    Not a ``ScopedManager``: the memberships are what a request's tenant is resolved from
    (``apps.accounts.tenancy``), before any hospital scope exists. Pages list them through
    ``visible_to``.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MembershipManager()

    class Meta:
        ordering = ["hospital__name", "role"]
        constraints = [
            models.UniqueConstraint(fields=["user", "hospital", "role"], name="unique_membership_role"),
        ]
        indexes = [models.Index(fields=["hospital", "role"])]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.hospital}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """The platform superuser is never a member of a hospital, whichever path tries."""
        if User.objects.filter(pk=self.user_id, is_superuser=True).exists():
            raise ValidationError(PLATFORM_ADMIN_NOT_A_MEMBER)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.user_id is not None and User.objects.filter(pk=self.user_id, is_superuser=True).exists():
            raise ValidationError({"user": PLATFORM_ADMIN_NOT_A_MEMBER})


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def visible_to(self, tenant: Any) -> InvitationQuerySet:
        """A hospital's admins see its invitations; nobody else does."""
        return self.filter(hospital=tenant.hospital) if tenant.is_admin else self.none()

    def pending(self) -> InvitationQuerySet:
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())


InvitationManager = models.Manager.from_queryset(InvitationQuerySet)


class Invitation(models.Model):
    """An invitation, e-mailed to an address, to take a role in a hospital. The person accepts it
    with the account of that address (signing in, or creating it from the invitation); until then
    nobody is attached to the hospital, and the admin never learns whether an account exists.

    Only the SHA-256 digest of the link's token is stored. Used once; expires after
    ``INVITATION_TTL_DAYS``; a hospital admin can withdraw it.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="invitations")
    email = models.EmailField("e-mail address")
    role = models.CharField(max_length=20, choices=Role.choices)
    token_digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="invitations_sent", null=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="invitations_accepted",
        null=True,
        blank=True,
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[InvitationManager[Invitation]] = ScopedManager(InvitationManager, hospital="hospital")
    _default_manager: ClassVar[
        InvitationManager[Invitation]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["hospital", "email"])]

    def __str__(self) -> str:
        return f"Invitation of {self.email} as {self.get_role_display().lower()} at {self.hospital}"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "withdrawn"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class ApiToken(AbstractAuthToken):
    """A REST API token (django-rest-knox): only its SHA-512 digest and its first characters are
    stored, it expires (``API_TOKEN_TTL_HOURS``), and it may be bound to one hospital, whose API
    is then the only one it opens.

    Revoked (deleted) by the user ("Revoke all" on the API tokens page, ``POST
    /api/v1/auth/logout/`` and ``/logoutall/``), and with every token of the account when its
    password changes or it is switched off (``User.save``).
    """

    name = models.CharField(max_length=100, blank=True, help_text="What the token is for.")
    hospital = models.ForeignKey(
        Hospital,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_tokens",
        help_text="The only hospital whose API this token opens; empty: every hospital of the user.",
    )

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.token_key}… ({self.user})"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Bulk ``update()`` and ``delete()`` raise too, like ``save`` and ``delete`` on one event."""

    def visible_to(self, tenant: Tenant) -> AuditEventQuerySet:
        """A hospital's events are read by its hospital admins, and by nobody else in the portal
        (platform admins read every hospital's in ``/admin/``)."""
        if not tenant.is_admin:
            return self.none()
        return self.filter(hospital=tenant.hospital)

    def update(self, **kwargs: object) -> int:
        raise RuntimeError("Audit events are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise RuntimeError("Audit events are append-only.")


AuditEventManager = models.Manager.from_queryset(AuditEventQuerySet)


class AuditEvent(models.Model):
    """Append-only record of a state change or an access to patient data.

    Written only by ``apps.accounts.audit.record``, which links each event into one hash chain
    (``prev_hash`` is the SHA-256 of the event before it, see ``apps/accounts/auditchain.py``);
    never edited or deleted: ``save`` on an existing row, ``delete``, and bulk
    ``update``/``delete`` through the manager all raise, and on PostgreSQL a trigger rejects
    UPDATE and DELETE as well (migration 0006).

    Who acted is kept twice: ``actor`` (a protected foreign key, so a user with audit events
    cannot be deleted, only deactivated) and a snapshot of their e-mail and name at the time.
    ``patient_id`` is the patient the event concerns, when there is one (the object itself, or
    the object's patient); a plain number, so the event outlives a deleted patient record.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="audit_events", null=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    actor_email = models.EmailField(max_length=254, blank=True)
    actor_name = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    patient_id = models.PositiveBigIntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    prev_hash = models.CharField(max_length=64, help_text="SHA-256 of the previous event in the chain.")

    objects: ClassVar[AuditEventManager[AuditEvent]] = ScopedManager(AuditEventManager, hospital="hospital")
    _default_manager: ClassVar[
        AuditEventManager[AuditEvent]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["hospital", "-created_at"]),
            models.Index(fields=["hospital", "patient_id"], name="audit_hospital_patient"),
        ]

    def __str__(self) -> str:
        when = f"{self.created_at:%Y-%m-%d %H:%M}"
        return f"{when} {self.actor_display} {self.action} {self.object_type}#{self.object_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("Audit events are append-only.")
        if not self.prev_hash:
            raise RuntimeError("Write audit events with apps.accounts.audit.record, which chains them.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise RuntimeError("Audit events are append-only.")

    @property
    def actor_display(self) -> str:
        """Who acted, as they were named then ("System" for events without a person)."""
        return self.actor_name or self.actor_email or "System"


class AuditChainHead(models.Model):
    """The one row (pk 1) that says where the audit hash chain ends.

    Every ``record`` locks it (an UPDATE, inside the event's transaction) before reading
    ``last_hash``, so concurrent events queue up instead of forking the chain; ``verify_audit``
    compares it with the newest event, so removing events at the end is detected too.
    """

    last_event_id = models.PositiveBigIntegerField(null=True, blank=True)
    last_hash = models.CharField(max_length=64)
    length = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"audit chain head: {self.length} events, last #{self.last_event_id} {self.last_hash[:12]}"
