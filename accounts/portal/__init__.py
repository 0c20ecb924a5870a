"""The developer portal: server-rendered pages (session auth, CSRF, CSP) on the same services as the
management API (docs/portal.md). Views are thin: they parse a form, call a service or selector of
accounts/billing/marketdata, and render a template of ``accounts/templates/portal/``."""
