"""Admin for chat metadata and notifications.

Hospital admins do not read chats, so message bodies are not in the admin at all, and
conversations (who talks to whom) are visible to platform admins only, read-only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Conversation, Notification


class PlatformReadOnlyAdmin(admin.ModelAdmin):
    """Read-only, and only for platform admins (superusers)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(PlatformReadOnlyAdmin):
    list_display = ("id", "hospital", "patient", "doctor", "created_at")
    list_filter = ("hospital",)
    fields = ("hospital", "patient", "doctor", "created_at")
    readonly_fields = fields


@admin.register(Notification)
class NotificationAdmin(PlatformReadOnlyAdmin):
    list_display = ("id", "hospital", "user", "kind", "created_at", "read_at")
    list_filter = ("hospital", "kind")
    fields = ("hospital", "user", "kind", "title", "url", "created_at", "read_at")
    readonly_fields = fields
