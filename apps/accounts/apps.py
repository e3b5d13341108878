from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts and hospitals"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from .signals import on_user_logged_out

        user_logged_out.connect(on_user_logged_out, dispatch_uid="accounts.user_logged_out")
