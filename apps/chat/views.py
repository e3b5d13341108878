"""Notification and chat pages. Thin: parse, ask access.py, call services.py, render.

The conversation page works without JavaScript (plain form post → redirect); static/js/chat.js
upgrades it to a WebSocket when it can.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts import audit
from apps.accounts.models import Role
from apps.accounts.tenancy import TenantRequest, role_required

from . import access, notifications, services
from .models import Conversation, Message, Notification

MESSAGES_PER_PAGE = 30
NOTIFICATIONS_PER_PAGE = 50


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@require_http_methods(["GET", "POST"])
def notification_list(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    """Every member's notifications in this hospital; POST marks them all read."""
    tenant = request.tenant
    if request.method == "POST":
        notifications.mark_read(tenant.hospital.pk, tenant.user.pk)
        return redirect("chat:notifications", hospital_slug)
    qs = Notification.objects.visible_to(tenant).order_by("-id")
    page = Paginator(qs, NOTIFICATIONS_PER_PAGE).get_page(request.GET.get("page"))
    audit.record("notification.list", hospital=tenant.hospital, actor=request.user, request=request)
    return render(
        request,
        "chat/notifications.html",
        {"page": page, "unread": notifications.unread_count(tenant.hospital.pk, tenant.user.pk)},
    )


@require_GET
def notifications_json(request: TenantRequest, hospital_slug: str) -> JsonResponse:
    """``?since=<id>``: the notifications after that id, oldest first (fallback to the socket sync)."""
    tenant = request.tenant
    since = _int(request.GET.get("since", "0"))
    if since is None or since < 0:
        return JsonResponse({"error": "“since” must be a notification id."}, status=400)
    missed = notifications.notifications_since(tenant.hospital.pk, tenant.user.pk, since)
    if missed:
        audit.record(
            "notification.sync", hospital=tenant.hospital, actor=request.user, request=request, count=len(missed)
        )
    return JsonResponse(
        {
            "notifications": [n.as_event() for n in missed],
            "unread": notifications.unread_count(tenant.hospital.pk, tenant.user.pk),
        }
    )


@role_required(Role.DOCTOR, Role.PATIENT)
@require_http_methods(["GET", "POST"])
def inbox(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    """Conversations with unread counts; POST starts one (doctor → patient or patient → doctor)."""
    tenant = request.tenant
    if request.method == "POST":
        conversation = _start(request)
        return redirect("chat:conversation", hospital_slug, conversation.pk)
    return render(
        request,
        "chat/inbox.html",
        {
            "conversations": access.inbox(tenant),
            "startable_patients": access.startable_patients(tenant),
            "startable_doctors": access.startable_doctors(tenant),
        },
    )


def _start(request: TenantRequest) -> Conversation:
    tenant = request.tenant
    patient_id = _int(request.POST.get("patient"))
    doctor_id = _int(request.POST.get("doctor"))
    if doctor_id is None and tenant.is_doctor:
        patient = access.startable_patients(tenant).filter(pk=patient_id).first() if patient_id is not None else None
        if patient is None:
            raise Http404("No such patient.")
        return services.start_conversation(patient, tenant.user, actor=tenant.user, request=request)
    for patient, doctor in access.startable_doctors(tenant):
        if patient.pk == patient_id and doctor.pk == doctor_id:
            return services.start_conversation(patient, doctor, actor=tenant.user, request=request)
    raise Http404("No such doctor.")


@role_required(Role.DOCTOR, Role.PATIENT)
@require_http_methods(["GET", "POST"])
def conversation(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant
    convo = access.get_conversation(tenant, pk)
    error, draft, status = "", "", 200
    if request.method == "POST":
        draft = request.POST.get("body", "")
        try:
            services.send_message(convo, request.user, draft, request=request)
        except services.RateLimited as exc:
            error, status = " ".join(exc.messages), 429
        except ValidationError as exc:
            error, status = " ".join(exc.messages), 400
        else:
            return redirect(services.conversation_url(convo) + "#latest")

    history = (
        Message.objects.visible_to(tenant)
        .filter(conversation=convo)
        .select_related("sender")
        .order_by("-created_at", "-id")
    )
    page = Paginator(history, MESSAGES_PER_PAGE).get_page(request.GET.get("page"))
    if page.number == 1:
        services.mark_read(convo, request.user)
    audit.record(
        "conversation.view", hospital=tenant.hospital, actor=request.user, obj=convo, request=request, page=page.number
    )
    other = convo.patient.user if request.user.pk == convo.doctor_id else convo.doctor
    return render(
        request,
        "chat/conversation.html",
        {
            "conversation": convo,
            "other": other,
            "page": page,
            "chat_messages": list(reversed(page.object_list)),
            "error": error,
            "draft": draft,
            "max_length": services.MESSAGE_MAX_LENGTH,
        },
        status=status,
    )
