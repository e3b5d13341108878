"""Token endpoints of the REST API, mounted at /api/v1/auth/ (namespace "api-auth").

Tokens are created on the API tokens page (/accounts/tokens/), after a full login with the second
factor where one is required, or with ``manage.py create_api_token``; never with a password alone.
"""

from django.urls import path

from . import api

app_name = "api-auth"
urlpatterns = [
    path("logout/", api.TokenLogout.as_view(), name="logout"),
    path("logoutall/", api.TokenLogoutAll.as_view(), name="logoutall"),
]
