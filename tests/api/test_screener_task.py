"""The beat-scheduled task keeps the screener table current (marketdata.refresh_screener)."""

import pytest

from apiplatform.jobs.models import JobRun
from apiplatform.jobs.schedules import schedules_all
from marketdata.models import TIMEFRAMES, LatestIndicator
from marketdata.tasks import refresh_screener

SCHEDULES = schedules_all()


def test_refresh_screener_task_fills_the_latest_indicator_table(market):
    assert not LatestIndicator.objects.filter(timeframe="1h").exists()
    result = refresh_screener.apply(kwargs={"timeframes": ["1h", "1d"]})
    assert result.successful(), result.traceback
    rows = LatestIndicator.objects.filter(timeframe="1h")
    assert set(rows.values_list("coin_id", flat=True)) == {market["bitcoin"], market["ethereum"]}
    run = JobRun.objects.get(job="marketdata.refresh_screener")
    assert run.outcome == JobRun.Outcome.SUCCESS
    assert run.details["1h"]["coins"] == 2


def test_every_timeframe_has_a_screener_schedule():
    scheduled = [
        tf for s in SCHEDULES if s.task == "marketdata.refresh_screener" for tf in s.kwargs["timeframes"]
    ]
    assert sorted(scheduled) == sorted(TIMEFRAMES)


@pytest.mark.django_db
def test_usage_flush_and_key_last_used_are_scheduled():
    from django_celery_beat.models import PeriodicTask

    tasks = {s.task for s in SCHEDULES}
    assert "billing.flush_usage" in tasks
    # accounts registers its own last-used flush in a data migration
    assert PeriodicTask.objects.filter(task="accounts.flush_key_last_used").exists()
