"""Forms of the operations console."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from marketdata.models import TIMEFRAMES

#: The longest range one re-fetch request may cover (the backfill re-fetches hourly history in
#: 31-day requests; a larger repair is a backfill: ``manage.py`` / ingestion.backfill).
REFETCH_MAX_RANGE = timedelta(days=31)


class RefetchForm(forms.Form):
    timeframe = forms.ChoiceField(choices=[(tf, tf) for tf in TIMEFRAMES])
    start = forms.DateTimeField(help_text="UTC, e.g. 2026-03-01 12:00")
    end = forms.DateTimeField(help_text="UTC, exclusive; not in the future")

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start is None or end is None:
            return data
        if end <= start:
            self.add_error("end", "The end must be after the start.")
        elif end > timezone.now():
            self.add_error("end", "The end must not be in the future.")
        elif end - start > REFETCH_MAX_RANGE:
            self.add_error("end", f"At most {REFETCH_MAX_RANGE.days} days per request.")
        return data
