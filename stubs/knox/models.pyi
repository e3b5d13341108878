# Types for django-rest-knox 5.1 (it ships none): the abstract token model ApiToken builds on, so
# that the django-stubs plugin can type its fields and its manager.
from datetime import timedelta
from typing import Any, ClassVar, Self, TypeVar

from django.db import models

_T = TypeVar("_T", bound=models.Model)

class AuthTokenManager(models.Manager[_T]):
    # knox's create returns the row and the token itself (shown once), unlike Manager.create.
    def create(  # type: ignore[override]
        self, user: Any, expiry: timedelta | None = ..., prefix: str | None = ..., **kwargs: Any
    ) -> tuple[_T, str]: ...

class AbstractAuthToken(models.Model):
    objects: ClassVar[AuthTokenManager[Self]]
    digest = models.CharField(max_length=128, primary_key=True)
    token_key = models.CharField(max_length=25, db_index=True)
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="auth_token_set")
    created = models.DateTimeField(auto_now_add=True)
    expiry = models.DateTimeField(null=True, blank=True)

class AuthToken(AbstractAuthToken): ...
