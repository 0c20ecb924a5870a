from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "marketdata.alerts"
    label = "alerts"
    verbose_name = "Alerts: conditions on market data, webhook deliveries"
