"""Routes of the marketdata app: the public market data API, mounted at /v1/ by apiplatform/urls.py.

Each indicator has its own route (and OpenAPI operation); the generic ``indicators/<name>`` route only
answers names that are not indicators (404 naming the valid ones).
"""

from django.urls import path

from marketdata.api import stream, views

urlpatterns = [
    path("coins", views.CoinListView.as_view(), name="coins"),
    path("coins/<str:coin_id>/candles.csv", views.CandleCSVView.as_view(), name="candles-csv"),
    path("coins/<str:coin_id>", views.CoinDetailView.as_view(), name="coin"),
    path("coins/<str:coin_id>/candles", views.CandleListView.as_view(), name="candles"),
    path("coins/<str:coin_id>/history", views.CoinHistoryView.as_view(), name="coin-history"),
    path("coins/<str:coin_id>/market_chart", views.MarketChartView.as_view(), name="market-chart"),
    path("candles", views.MultiCandleListView.as_view(), name="candles-multi"),
    path("candles.csv", views.MultiCandleCSVView.as_view(), name="candles-multi-csv"),
    path("coins/<str:coin_id>/coverage", views.CoverageView.as_view(), name="coverage"),
    *[
        path(f"coins/<str:coin_id>/indicators/{name}", view.as_view(), name=f"indicator-{name}")
        for name, view in views.INDICATOR_VIEWS.items()
    ],
    path("coins/<str:coin_id>/indicators/<str:name>", views.IndicatorView.as_view(), name="indicator"),
    path("markets", views.MarketListView.as_view(), name="markets"),
    path("prices", views.PriceView.as_view(), name="prices"),
    path("global", views.GlobalView.as_view(), name="global"),
    path("global/history", views.GlobalHistoryView.as_view(), name="global-history"),
    path("rankings", views.RankingView.as_view(), name="rankings"),
    path("screener", views.ScreenerView.as_view(), name="screener"),
    path("stream", stream.StreamView.as_view(), name="stream"),  # SSE, served by uvicorn (docs/stream.md)
]
