"""``manage.py create_api_token EMAIL [--hospital SLUG] [--name TEXT]``: a new API token for a
doctor or hospital admin, printed once (only its digest is stored). For server-side scripts run by
whoever administers the machine; people create their own on the API tokens page."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts import tokens
from apps.accounts.models import Hospital, User


class Command(BaseCommand):
    help = "Create an API token for a doctor or hospital admin and print it (it is shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="The account's e-mail address.")
        parser.add_argument("--hospital", metavar="SLUG", help="Bind the token to this hospital only.")
        parser.add_argument("--name", default="", help="What the token is for (shown in the token list).")

    def handle(self, *args: Any, email: str, hospital: str | None, name: str, **options: Any) -> None:
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No account with the e-mail address {email!r}.")
        bound = None
        if hospital:
            bound = Hospital.objects.filter(slug=hospital).first()
            if bound is None:
                raise CommandError(f"No hospital with the slug {hospital!r}.")
        try:
            token, raw = tokens.create(user, name=name or "created with manage.py", hospital=bound)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(raw)
        where = f"hospital {bound.slug}" if bound else "every hospital of the account"
        self.stderr.write(f"Token for {user.email} ({where}), valid until {token.expiry:%Y-%m-%d %H:%M %Z}.")
