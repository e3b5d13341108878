"""The route table of the tenancy/permission matrix (tests/test_tenancy_matrix.py).

Every URL pattern under ``/h/<hospital_slug>/`` and ``/api/v1/h/<hospital_slug>/`` must be
described by at least one :class:`Route` in a module of this package (one module per area:
``api.py``, ``studies_pages.py``, ``diagnosis.py``, ``chat.py``, ``reports.py`` ...). Each
module exports ``ROUTES = [Route(...), ...]``; :func:`load_routes` collects them all, so a new
module is picked up without touching the matrix. See README.md in this folder for the format.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The personas every route is requested as (besides ``owner``), and who they are in ``world``.
PERSONAS: dict[str, str | None] = {
    "anon": None,  # not logged in
    "patient": "paul",  # patient user in hospital A (world.paul_record)
    "unassigned_doctor": "bob",  # doctor in hospital A, assigned to nobody
    "other_hospital_doctor": "dora",  # doctor in hospital B only
}

Status = int | tuple[int, ...]


def _no_kwargs(world: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Route:
    """One request to make as every persona, and the status each persona must get.

    name     -- the namespaced URL name, e.g. ``"studies:study_detail"``.
    method   -- ``"GET"`` or ``"POST"`` (list a route twice to test both).
    kwargs   -- ``kwargs(world) -> dict`` of URL kwargs *other than* ``hospital_slug`` (it is
                added as hospital A's slug unless you return one). Runs inside
                ``scopes_disabled()`` and may create what it needs (e.g. a study of Paul's).
                It is called once per request, so every persona gets fresh objects.
    data     -- optional ``data(world) -> dict`` for the POST body (multipart by default; file
                values may be ``SimpleUploadedFile``). Called once per request.
    json     -- send ``data`` as JSON instead of multipart.
    anon, patient, unassigned_doctor, other_hospital_doctor -- expected status for each
                persona: an int, or a tuple of acceptable ints. Pages: anon 302 (to the login
                page); API: anon 401. Non-member (dora in hospital A) 404. Wrong role 403.
                Object the persona may not see: 404.
    owner    -- ``(persona_name, status)`` of the user who should succeed: any attribute of
                ``world`` that is a user (``"alice"``, ``"carol"``, ``"paul"``, ``"bob"``,
                ``"dora"``), e.g. ``("alice", 200)`` or ``("alice", (200, 302))``.
    label    -- optional suffix to tell two entries of the same name and method apart.
    check    -- optional ``check(response, world)`` run after the owner's request (extra
                assertions on the successful response; raise AssertionError on failure).
    """

    name: str
    method: str = "GET"
    kwargs: Callable[[Any], dict[str, Any]] = _no_kwargs
    data: Callable[[Any], dict[str, Any]] | None = None
    json: bool = False
    anon: Status = 302
    patient: Status = 403
    unassigned_doctor: Status = 404
    other_hospital_doctor: Status = 404
    owner: tuple[str, Status] = ("alice", 200)
    label: str = ""
    check: Callable[[Any, Any], None] | None = None

    @property
    def id(self) -> str:
        return f"{self.name} {self.method}" + (f" [{self.label}]" if self.label else "")

    def expected(self, persona: str) -> tuple[int, ...]:
        """Acceptable statuses for ``persona`` (``"owner"`` or a key of PERSONAS)."""
        value = self.owner[1] if persona == "owner" else getattr(self, persona)
        return value if isinstance(value, tuple) else (value,)

    def user_for(self, persona: str, world: Any) -> Any:
        """The user acting as ``persona`` (None for anonymous)."""
        attr = self.owner[0] if persona == "owner" else PERSONAS[persona]
        return None if attr is None else getattr(world, attr)


def load_routes() -> list[Route]:
    """All ``ROUTES`` of every module in this package, in module order."""
    routes: list[Route] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        routes.extend(getattr(module, "ROUTES", []))
    return routes
