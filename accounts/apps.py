from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts: organizations, users, API keys"

    def ready(self) -> None:
        from accounts import problems, schema  # noqa: F401 - registers problem types and the OpenAPI scheme
