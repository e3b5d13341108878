"""The tenancy/permission matrix, generated from the URL conf.

* Every URL pattern whose route contains ``<hospital_slug>`` (pages and API) must be described
  in the route table (``tests/routes/*.py``, format in tests/routes/README.md); a new route that
  nobody describes makes ``test_every_slug_route_is_in_the_table`` fail and names it.
* Each table entry is requested as anonymous, as Paul (patient of hospital A), as Bob (doctor of
  A assigned to nobody), as Dora (doctor of hospital B) and as its owner; one test case each.
* Routes outside ``/h/<slug>/`` must be declared in ``NON_SLUG`` below (or be the Django
  admin, which must turn away anyone who is not staff).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_scopes import scopes_disabled

from tests.routes import PERSONAS, Route, load_routes

BACKEND = "django.contrib.auth.backends.ModelBackend"
SLUG_MARK = "hospital_slug"


def walk_urlconf(
    patterns: list[Any] | None = None, prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str, URLPattern]]:
    """Every leaf pattern of the URL conf as (full route, namespaced name or "", pattern)."""
    if patterns is None:
        patterns = get_resolver().url_patterns
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from walk_urlconf(entry.url_patterns, route, ns)
        elif isinstance(entry, URLPattern):
            name = ""
            if entry.name:
                name = f"{namespace}:{entry.name}" if namespace else entry.name
            yield route, name, entry


def slug_routes() -> list[tuple[str, str]]:
    return [(route, name) for route, name, _ in walk_urlconf() if SLUG_MARK in route]


def url_parameters(route: str) -> set[str]:
    """The parameter names of a route: ``{"hospital_slug", "pk"}`` for ``h/<slug:hospital_slug>/s/<int:pk>/``."""
    return set(re.findall(r"<(?:\w+:)?(\w+)>", route))


ROUTES: list[Route] = load_routes()
CASES = [(route, persona) for route in ROUTES for persona in [*PERSONAS, "owner"]]
#: Entries whose URL names an object besides the hospital (known from the URL conf, so at collection).
_OBJECT_ROUTE_NAMES = {name for route, name in slug_routes() if url_parameters(route) - {SLUG_MARK}}
OBJECT_ROUTES = [route for route in ROUTES if route.name in _OBJECT_ROUTE_NAMES]


# --- coverage: the table and the URL conf agree ---------------------------------------------------


def test_every_slug_route_is_in_the_table():
    described = {route.name for route in ROUTES}
    missing = sorted(
        f"{name or '(unnamed)'}  /{route}" for route, name in slug_routes() if not name or name not in described
    )
    assert not missing, (
        "These routes under <hospital_slug> are not in the tenancy matrix; add a Route for each to "
        "tests/routes/<area>.py (see tests/routes/README.md):\n  " + "\n  ".join(missing)
    )


def test_every_table_entry_names_a_real_slug_route():
    names = {name for _, name in slug_routes()}
    stale = sorted({route.name for route in ROUTES} - names)
    assert not stale, f"Route table entries that name no route under <hospital_slug>: {stale}"


def test_table_entries_are_unique_and_well_formed():
    ids = [route.id for route in ROUTES]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"Duplicate route table entries (give them a label): {duplicates}"
    for route in ROUTES:
        assert route.method in {"GET", "POST", "PUT", "PATCH", "DELETE"}, route.id
        assert route.owner[0] in {"alice", "bob", "carol", "paul", "dora"}, route.id
        for persona in [*PERSONAS, "owner"]:
            assert all(100 <= s < 500 for s in route.expected(persona)), f"{route.id}: {persona}"


def test_matrix_is_not_empty():
    assert slug_routes(), "the URL conf walk found no hospital routes: is the walker broken?"
    assert len(CASES) == 5 * len(ROUTES) >= 5 * len({name for _, name in slug_routes()})


# --- the matrix itself ------------------------------------------------------------------------------


def _request(client, route: Route, world) -> Any:
    with scopes_disabled():
        kwargs = dict(route.kwargs(world))
        data = route.data(world) if route.data else None
    kwargs.setdefault("hospital_slug", world.a.slug)
    url = reverse(route.name, kwargs=kwargs)
    call = getattr(client, route.method.lower())
    if route.method == "GET":
        return call(url)
    if route.json:
        return call(url, data=data or {}, content_type="application/json")
    return call(url, data=data or {})


def _is_api(route: Route) -> bool:
    return route.name.startswith("api:")


@pytest.mark.parametrize(("route", "persona"), CASES, ids=[f"{r.id}-{p}" for r, p in CASES])
def test_route_persona(client, world, route: Route, persona: str):
    user = route.user_for(persona, world)
    if user is not None:
        client.force_login(user, backend=BACKEND)
    response = _request(client, route, world)
    expected = route.expected(persona)
    as_who = f"{persona} ({user.email if user else 'anonymous'})"
    assert response.status_code in expected, (
        f"{route.method} {response.request['PATH_INFO']} as {as_who}: got {response.status_code}, "
        f"expected {' or '.join(map(str, expected))}"
    )
    if persona == "anon" and response.status_code == 302:
        assert reverse("accounts:login") in response["Location"], response["Location"]
    if persona == "anon" and response.status_code == 401:
        assert response.has_header("WWW-Authenticate")
    if persona == "other_hospital_doctor" and response.status_code == 404 and not _is_api(route):
        # The 404 must not leak the other hospital's name.
        assert world.a.name.encode() not in response.content
    if persona == "owner" and route.check is not None:
        route.check(response, world)


# --- the other hospital's objects, asked for from one's own hospital --------------------------------


@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=[r.id for r in OBJECT_ROUTES])
def test_other_hospitals_object_ids_are_404_in_ones_own_hospital(client, world, route: Route):
    """Dora, in her own hospital B, puts hospital A's object ids in the URL: never a success.

    The membership check passes (B is hers), so only the per-object scoping stands between her
    and A's data: the answer must be 404 (or 403 where her role does not reach the page).
    Entries without an object in the URL (lists, forms) are left out at collection: the URL conf
    says which routes take more than the hospital slug."""
    with scopes_disabled():
        kwargs = dict(route.kwargs(world))
        data = route.data(world) if route.data else None
    assert kwargs and SLUG_MARK not in kwargs, f"{route.id}: kwargs must name hospital A's object, got {kwargs}"
    kwargs[SLUG_MARK] = world.b.slug
    client.force_login(world.dora, backend=BACKEND)
    url = reverse(route.name, kwargs=kwargs)
    if route.method == "GET":
        response = client.get(url)
    elif route.json:
        response = getattr(client, route.method.lower())(url, data=data or {}, content_type="application/json")
    else:
        response = getattr(client, route.method.lower())(url, data=data or {})
    assert response.status_code in (403, 404), f"{route.method} {url} as dora: {response.status_code}"


# --- routes outside /h/<slug>/ ---------------------------------------------------------------------

#: name -> (method, kwargs, status anonymous, status for a logged-in doctor (Alice))
NON_SLUG: dict[str, tuple[str, dict[str, str], int, int]] = {
    "accounts:home": ("GET", {}, 302, 302),
    "accounts:about": ("GET", {}, 200, 200),
    "accounts:login": ("GET", {}, 200, 302),
    "accounts:logout": ("POST", {}, 302, 302),
    "accounts:password_change": ("GET", {}, 302, 200),
    "accounts:password_change_done": ("GET", {}, 302, 200),
    "accounts:password_reset": ("GET", {}, 200, 200),
    "accounts:password_reset_done": ("GET", {}, 200, 200),
    "accounts:password_reset_confirm": ("GET", {"uidb64": "MQ", "token": "bad-token"}, 200, 200),
    "accounts:password_reset_complete": ("GET", {}, 200, 200),
    "accounts:security": ("GET", {}, 302, 200),
    "accounts:two_factor_verify": ("GET", {}, 302, 302),  # she has no authenticator: on to the portal
    "accounts:two_factor_setup": ("GET", {}, 302, 200),
    "accounts:recovery_codes_new": ("POST", {}, 302, 302),  # none without an authenticator: set one up
    "accounts:two_factor_remove": ("POST", {}, 302, 302),
    "accounts:reauthenticate": ("GET", {}, 302, 200),
    "accounts:invitation": ("GET", {"token": "no-such-invitation"}, 404, 404),
    "accounts:api_tokens": ("GET", {}, 302, 200),
    "accounts:api_token_revoke": ("POST", {}, 302, 404),  # no such token of hers
    "accounts:api_tokens_revoke_all": ("POST", {}, 302, 302),
    # Token-only endpoints: a browser session is no token.
    "api-auth:logout": ("POST", {}, 401, 401),
    "api-auth:logoutall": ("POST", {}, 401, 401),
    # The OpenAPI description holds no patient data; it is public like any API documentation.
    "api-schema": ("GET", {}, 200, 200),
    "api-docs": ("GET", {}, 200, 200),
}


def test_every_route_outside_hospitals_is_declared():
    undeclared = sorted(
        f"{name or '(unnamed)'}  /{route}"
        for route, name, _ in walk_urlconf()
        if SLUG_MARK not in route and not route.startswith("admin/") and name not in NON_SLUG
    )
    assert not undeclared, "Routes outside /h/<slug>/ missing from NON_SLUG in this file:\n  " + "\n  ".join(undeclared)


@pytest.mark.parametrize("name", sorted(NON_SLUG))
@pytest.mark.parametrize("persona", ["anon", "alice"])
def test_route_outside_hospitals(client, world, name: str, persona: str):
    method, kwargs, anon_status, user_status = NON_SLUG[name]
    if persona == "alice":
        client.force_login(world.alice, backend=BACKEND)
    url = reverse(name, kwargs=kwargs)
    response = client.post(url) if method == "POST" else client.get(url)
    expected = anon_status if persona == "anon" else user_status
    assert response.status_code == expected, f"{method} {url} as {persona}: {response.status_code}"
    if persona == "anon" and response.status_code == 302:
        assert reverse("accounts:login") in response["Location"]


def _admin_changelists() -> list[str]:
    return sorted(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist" for m in admin.site._registry)


@pytest.mark.parametrize("name", ["admin:index", *_admin_changelists()])
@pytest.mark.parametrize("persona", ["anon", "alice", "carol"])
def test_admin_turns_away_non_staff(client, world, name: str, persona: str):
    """Doctors and hospital admins without ``is_staff`` never reach the Django admin."""
    if persona != "anon":
        client.force_login(getattr(world, persona), backend=BACKEND)
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302, f"{url} as {persona}: {response.status_code}"
    assert response["Location"].startswith(reverse("admin:login")), response["Location"]


def test_home_sends_each_persona_to_their_hospital(client, world):
    for user, target in [(world.alice, "/h/st-mary/"), (world.paul, "/h/st-mary/my/"), (world.dora, "/h/riverside/")]:
        client.force_login(user, backend=BACKEND)
        response = client.get(reverse("accounts:home"))
        assert response.status_code == 302 and response["Location"] == target, (user.email, response)
        client.logout()
