"""Admin for the market data store. The candle and tick tables are huge: no full counts, cheap pages,
and candle lists without a coin filter only show the last hours (so no query scans a whole table)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.functional import cached_property

from marketdata.models import CandleListing, Coin, MarketSnapshot


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` rows (``SELECT count(*) FROM (… LIMIT CAP)``): pages stay cheap on
    tables of hundreds of millions of rows; the page list simply ends at the cap."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        # the admin pages querysets (the base class types object_list as any sliceable sequence)
        return cast("QuerySet[Any]", self.object_list)[: self.CAP].count()


class CoinFilter(admin.SimpleListFilter):
    """Filter by coin id (``?coin=<id>``); offers the 15 largest coins, any id works in the URL."""

    title = "coin"
    parameter_name = "coin"

    def lookups(self, request, model_admin):
        top = MarketSnapshot.objects.select_related("coin").order_by("rank")[:15]
        return [(str(s.coin_id), s.coin.upstream_id) for s in top if s.rank is not None]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(coin_id=int(value))
        return queryset


@admin.register(Coin)
class CoinAdmin(admin.ModelAdmin):
    list_display = ("upstream_id", "symbol", "name", "active", "first_seen", "last_seen")
    list_filter = ("active",)
    search_fields = ("=upstream_id", "=symbol", "name")
    readonly_fields = ("first_seen", "last_seen")
    show_full_result_count = False
    paginator = CappedCountPaginator


@admin.register(MarketSnapshot)
class MarketSnapshotAdmin(admin.ModelAdmin):
    list_display = (
        "coin",
        "rank",
        "price",
        "market_cap",
        "volume_24h",
        "change_24h_pct",
        "last_updated",
        "fetched_at",
    )
    list_select_related = ("coin",)
    search_fields = ("=coin__upstream_id", "=coin__symbol")
    ordering = ("rank",)
    show_full_result_count = False
    paginator = CappedCountPaginator

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CandleListing)
class CandleAdmin(admin.ModelAdmin):
    """Read-only candle list. Without a coin filter only the last ``RECENT`` is listed."""

    RECENT = timedelta(hours=2)
    list_display = (
        "coin_id",
        "timeframe",
        "bucket_start",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "volume_24h",
        "closed",
        "filled",
        "source",
        "revision",
        "updated_at",
    )
    list_display_links = None
    list_filter = (CoinFilter, "timeframe", "closed", "filled", "source")
    date_hierarchy = None
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100
    sortable_by = ()
    ordering = ("-bucket_start",)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if not request.GET.get(CoinFilter.parameter_name):
            qs = qs.filter(bucket_start__gte=timezone.now() - self.RECENT)
        return qs

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
