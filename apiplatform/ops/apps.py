from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apiplatform.ops"
    label = "ops"
    verbose_name = "Operations"
