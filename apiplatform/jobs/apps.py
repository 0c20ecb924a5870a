from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apiplatform.jobs"
    label = "jobs"
    verbose_name = "Jobs: task base, job runs, dead letters, periodic schedules"
