from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and care teams"

    def ready(self) -> None:
        from accounts import signals  # noqa: F401 - connects login/logout journalling
