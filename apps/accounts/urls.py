"""Login and the second factor, re-authentication, password management, account security, API
tokens, the hospital picker and the About page."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("", views.home, name="home"),
    path("about/", views.about, name="about"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/security/", views.security, name="security"),
    path("accounts/2fa/verify/", views.two_factor_verify, name="two_factor_verify"),
    path("accounts/2fa/setup/", views.two_factor_setup, name="two_factor_setup"),
    path("accounts/2fa/recovery-codes/", views.recovery_codes_new, name="recovery_codes_new"),
    path("accounts/2fa/remove/", views.two_factor_remove, name="two_factor_remove"),
    path("accounts/confirm/", views.reauthenticate, name="reauthenticate"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
    path("accounts/tokens/", views.api_tokens, name="api_tokens"),
    path("accounts/tokens/revoke/", views.api_token_revoke, name="api_token_revoke"),
    path("accounts/tokens/revoke-all/", views.api_tokens_revoke_all, name="api_tokens_revoke_all"),
    path(
        "accounts/password/change/",
        views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="accounts/password_change_done.html"),
        name="password_change_done",
    ),
    path(
        "accounts/password/reset/",
        views.PasswordResetView.as_view(),
        name="password_reset",
    ),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html"),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="accounts/password_reset_complete.html"),
        name="password_reset_complete",
    ),
]
