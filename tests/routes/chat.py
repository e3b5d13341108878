"""Chat and notification routes: pages (ROUTES, walked by tests/test_tenancy_matrix.py) and
WebSocket paths (WS_ROUTES, walked by tests/chat/test_ws_matrix.py).

Hospital admins do not read chats: Carol gets 403 on the chat pages and 4403 on chat sockets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from tests.routes import Route


def _conversation(w: Any) -> Any:
    """Paul ↔ Alice (Alice is assigned to Paul); runs inside scopes_disabled()."""
    from apps.chat.models import Conversation

    conversation, _ = Conversation.objects.get_or_create(hospital=w.a, patient=w.paul_record, doctor=w.alice)
    return conversation


def _conversation_kwargs(w: Any) -> dict[str, Any]:
    return {"pk": _conversation(w).pk}


def _message(w: Any) -> dict[str, Any]:
    """A chat message body; starts every persona with a fresh rate-limit window."""
    from apps.chat.services import rate_limit_key

    for user in (w.alice, w.bob, w.carol, w.paul, w.dora):
        cache.delete(rate_limit_key(w.a.pk, user.pk))
    return {"body": "Hello <b>doctor</b>"}


def _check_json(response: Any, w: Any) -> None:
    payload = json.loads(response.content)
    assert set(payload) == {"notifications", "unread"}, payload


def _check_escaped(response: Any, w: Any) -> None:
    assert b"<b>doctor</b>" not in response.content


ROUTES = [
    # GET /h/st-mary/notifications/ — every member reads their own.
    Route("chat:notifications", patient=200, unassigned_doctor=200),
    Route("chat:notifications", label="admin", patient=200, unassigned_doctor=200, owner=("carol", 200)),
    # POST /h/st-mary/notifications/ — mark all read.
    Route(
        "chat:notifications", method="POST", data=lambda w: {}, patient=302, unassigned_doctor=302, owner=("alice", 302)
    ),
    # GET /h/st-mary/notifications.json?since= (HTTP fallback of the socket's sync).
    Route("chat:notifications_json", patient=200, unassigned_doctor=200, check=_check_json),
    # GET /h/st-mary/messages/ — doctors and patients; admins 403.
    Route("chat:inbox", patient=200, unassigned_doctor=200),
    Route("chat:inbox", label="admin", patient=200, unassigned_doctor=200, owner=("carol", 403)),
    # POST /h/st-mary/messages/ — Alice starts a conversation with Paul (assigned, has a login).
    # Bob is not assigned (404); Paul may not start one "as a doctor" (no such doctor: 404).
    Route("chat:inbox", method="POST", data=lambda w: {"patient": w.paul_record.pk}, patient=404, owner=("alice", 302)),
    Route(
        "chat:inbox",
        method="POST",
        label="patient starts",
        data=lambda w: {"patient": w.paul_record.pk, "doctor": w.alice.pk},
        patient=302,
        owner=("paul", 302),
    ),
    Route(
        "chat:inbox",
        method="POST",
        label="admin",
        data=lambda w: {"patient": w.paul_record.pk},
        patient=404,
        owner=("carol", 403),
    ),
    # GET/POST /h/st-mary/messages/<pk>/ — Paul ↔ Alice: both parties succeed, nobody else.
    Route("chat:conversation", kwargs=_conversation_kwargs, patient=200),
    Route("chat:conversation", label="admin", kwargs=_conversation_kwargs, patient=200, owner=("carol", 403)),
    Route(
        "chat:conversation",
        method="POST",
        kwargs=_conversation_kwargs,
        data=_message,
        patient=302,
        owner=("alice", 302),
    ),
    Route(
        "chat:conversation",
        method="POST",
        label="escaped",
        kwargs=_conversation_kwargs,
        data=lambda w: {**_message(w), "body": "<b>doctor</b>" * 1000},
        patient=400,
        owner=("alice", 400),
        check=_check_escaped,
    ),
]


# --- WebSocket paths --------------------------------------------------------------------------

ACCEPT = "accept"
WsExpect = int | str  # a close code (4401, 4403, 4404) or ACCEPT


@dataclass(frozen=True)
class WsRoute:
    """One WebSocket path and what each persona gets: ACCEPT or the close code.

    path(world) returns the path (``ws/h/<slug>/...``; runs inside ``scopes_disabled()``).
    Close codes: 4401 anonymous, 4404 not a member of the hospital, 4403 a member who may
    not open it. Every path is also refused for a foreign Origin.
    """

    name: str
    path: Callable[[Any], str]
    anon: WsExpect = 4401
    patient: WsExpect = 4403  # Paul
    unassigned_doctor: WsExpect = 4403  # Bob
    other_hospital_doctor: WsExpect = 4404  # Dora
    hospital_admin: WsExpect = 4403  # Carol
    owner: tuple[str, WsExpect] = ("alice", ACCEPT)

    def expectations(self) -> dict[str, tuple[str | None, WsExpect]]:
        """persona → (world attribute of the user or None, expected outcome)."""
        return {
            "anon": (None, self.anon),
            "patient": ("paul", self.patient),
            "unassigned_doctor": ("bob", self.unassigned_doctor),
            "other_hospital_doctor": ("dora", self.other_hospital_doctor),
            "hospital_admin": ("carol", self.hospital_admin),
            "owner": self.owner,
        }


WS_ROUTES = [
    WsRoute(
        "notifications",
        path=lambda w: f"/ws/h/{w.a.slug}/notifications/",
        patient=ACCEPT,
        unassigned_doctor=ACCEPT,
        hospital_admin=ACCEPT,
    ),
    WsRoute(
        "notifications (own hospital B)",
        path=lambda w: f"/ws/h/{w.b.slug}/notifications/",
        patient=4404,
        unassigned_doctor=4404,
        other_hospital_doctor=ACCEPT,
        hospital_admin=4404,
        owner=("dora", ACCEPT),
    ),
    WsRoute(
        "chat",
        path=lambda w: f"/ws/h/{w.a.slug}/chat/{_conversation(w).pk}/",
        patient=ACCEPT,
    ),
    WsRoute(
        "chat (no such conversation)",
        path=lambda w: f"/ws/h/{w.a.slug}/chat/999999/",
        owner=("alice", 4403),
    ),
]
