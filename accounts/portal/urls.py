"""The portal's routes, mounted at the root by apiplatform/urls.py (``/``, ``/pricing``, ``/signup``
are relied on: problem documents' ``upgrade_url`` points at /pricing)."""

from django.urls import path, re_path

from accounts.portal import account, alerts, billing, dashboard, keys, public, team

app_name = "portal"

urlpatterns = [
    path("", public.landing, name="landing"),
    path("pricing", public.pricing, name="pricing"),
    path("signup", public.signup, name="signup"),
    path("login", public.login_view, name="login"),
    path("login/two-factor", public.login_two_factor, name="login-two-factor"),
    path("logout", public.logout_view, name="logout"),
    path("verify-email", public.verify_email, name="verify-email"),
    path("invitation", public.invitation_accept_view, name="invitation"),
    path("password/reset", account.password_reset_view, name="password-reset"),
    path("password/reset/confirm", account.password_reset_confirm_view, name="password-reset-confirm"),
    path("changelog", dashboard.changelog, name="changelog"),
    path("portal/", dashboard.dashboard, name="dashboard"),
    path("portal/organization", dashboard.switch_organization, name="switch"),
    path("portal/verify-email/resend", dashboard.verification_resend, name="verify-resend"),
    path("portal/docs", dashboard.docs, name="docs"),
    path("portal/docs/try", dashboard.try_it, name="try-it"),
    path("portal/keys", keys.keys, name="keys"),
    path("portal/keys/<str:key_id>/rotate", keys.key_rotate, name="key-rotate"),
    path("portal/keys/<str:key_id>/revoke", keys.key_revoke, name="key-revoke"),
    path("portal/alerts", alerts.alerts, name="alerts"),
    path("portal/alerts/<int:alert_id>/pause", alerts.alert_active, {"active": False}, name="alert-pause"),
    path("portal/alerts/<int:alert_id>/resume", alerts.alert_active, {"active": True}, name="alert-resume"),
    path("portal/alerts/<int:alert_id>/delete", alerts.alert_delete, name="alert-delete"),
    path("portal/alerts/webhooks/<int:endpoint_id>/test", alerts.endpoint_test, name="endpoint-test"),
    path("portal/alerts/deliveries/<int:delivery_id>/replay", alerts.delivery_replay, name="delivery-replay"),
    path("portal/team", team.team, name="team"),
    path("portal/team/members/<int:member_id>/role", team.member_role, name="member-role"),
    path("portal/team/members/<int:member_id>/remove", team.member_remove, name="member-remove"),
    path(
        "portal/team/invitations/<int:invitation_id>/withdraw",
        team.invitation_withdraw,
        name="invitation-withdraw",
    ),
    path("portal/password", account.password_change_view, name="password"),
    path("portal/sessions", account.sessions_view, name="sessions"),
    path("portal/two-factor", account.two_factor_view, name="two-factor"),
    path("portal/sessions/everywhere", account.sessions_end_everywhere_view, name="sessions-end-all"),
    path("portal/sessions/<uuid:session_id>/end", account.session_end_view, name="session-end"),
    path("portal/billing", billing.billing, name="billing"),
    path("portal/billing/checkout", billing.checkout, name="checkout"),
    path("portal/billing/manage", billing.manage, name="billing-manage"),
    # anything else under /portal/: a page (the root handler404 answers problem+json for the API)
    re_path(r"^portal/.*$", dashboard.not_found, name="not-found"),
]
