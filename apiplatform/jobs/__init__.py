"""Project plumbing for background jobs: the Celery task base, run records, dead letters and the
schedule registry.

- `apiplatform.jobs.base`: ``@project_task`` (queues, time limits, retry taxonomy, dead-lettering);
- `apiplatform.jobs.services`: run records (``job_run_record``, shown in *Jobs → Job runs*; pruned
  by ``jobs.housekeeping``) and dead letters (record, replay, resolve);
- `apiplatform.jobs.schedules`: the `Schedule` type and the registry that collects the ``SCHEDULES``
  each app declares in its own ``schedules.py`` (``manage.py setup_schedules``), the jobs app's own
  housekeeping included.
"""
