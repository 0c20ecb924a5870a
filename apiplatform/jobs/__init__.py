"""Project plumbing for background jobs: the Celery task base, dead letters and the schedule registry.

- `apiplatform.jobs.base`: ``@project_task`` (queues, time limits, retry taxonomy, dead-lettering);
- `apiplatform.jobs.services`: dead letters (record, replay, resolve);
- `apiplatform.jobs.schedules`: the `Schedule` type and the registry that collects the ``SCHEDULES``
  each app declares in its own ``schedules.py`` (``manage.py setup_schedules``);
- `apiplatform.jobs.runs`: the run record a job writes (stored by ``JOBS_RUN_RECORDER``).
"""
