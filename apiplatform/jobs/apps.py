from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apiplatform.jobs"
    label = "jobs"
    verbose_name = "Jobs: task base, dead letters, periodic schedules"
