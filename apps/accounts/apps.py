from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts and hospitals"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
        from django.db.models.signals import post_delete

        from . import checks  # noqa: F401 - registers the deployment checks
        from .models import User
        from .signals import on_user_deleted, on_user_logged_in, on_user_logged_out, on_user_login_failed

        user_logged_in.connect(on_user_logged_in, dispatch_uid="accounts.user_logged_in")
        user_logged_out.connect(on_user_logged_out, dispatch_uid="accounts.user_logged_out")
        user_login_failed.connect(on_user_login_failed, dispatch_uid="accounts.user_login_failed")
        post_delete.connect(on_user_deleted, sender=User, dispatch_uid="accounts.user_deleted")
