"""Routes of the management API, mounted at /v1/account/ by apiplatform/urls.py."""

from django.urls import path, register_converter

from accounts import session_views, views
from accounts.keyformat import KeyIdConverter

app_name = "accounts"
# /keys/<key_id>: only what a key id can be (base62); anything else (a NUL byte...) is a 404 problem.
register_converter(KeyIdConverter, "keyid")

urlpatterns = [
    path("signup", views.SignupView.as_view(), name="signup"),
    path("token", views.TokenObtainView.as_view(), name="token"),
    path("token/refresh", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("verify-email", views.VerifyEmailView.as_view(), name="verify-email"),
    path("verify-email/resend", views.VerifyEmailResendView.as_view(), name="verify-email-resend"),
    path("me", views.MeView.as_view(), name="me"),
    path("organization", views.OrganizationView.as_view(), name="organization"),
    path("organization/leave", views.OrganizationLeaveView.as_view(), name="organization-leave"),
    path("members", views.MemberListView.as_view(), name="members"),
    path("members/<int:member_id>", views.MemberDetailView.as_view(), name="member"),
    path("invitations", views.InvitationListView.as_view(), name="invitations"),
    path("invitations/accept", views.InvitationAcceptView.as_view(), name="invitation-accept"),
    path("invitations/<int:invitation_id>", views.InvitationDetailView.as_view(), name="invitation"),
    path("keys", views.ApiKeyListView.as_view(), name="keys"),
    path("keys/<keyid:key_id>", views.ApiKeyDetailView.as_view(), name="key"),
    path("keys/<keyid:key_id>/revoke", views.ApiKeyRevokeView.as_view(), name="key-revoke"),
    path("keys/<keyid:key_id>/rotate", views.ApiKeyRotateView.as_view(), name="key-rotate"),
    path("audit-events", views.AuditEventListView.as_view(), name="audit-events"),
    # sessions and passwords (accounts/session_views.py)
    path("logout", session_views.LogoutView.as_view(), name="logout"),
    path("logout/all", session_views.LogoutAllView.as_view(), name="logout-all"),
    path("password", session_views.PasswordChangeView.as_view(), name="password"),
    path("password/reset", session_views.PasswordResetView.as_view(), name="password-reset"),
    path(
        "password/reset/confirm",
        session_views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
]
