"""Operator views: users, organizations with members, API keys (revoke action), audit log.

Key secrets are never stored, and the hash is never shown: the key admin is read-only except for
the revoke action, which goes through ``accounts.services.api_keys.api_key_revoke`` (audit + cache
publication).
"""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import ApiKey, AuditEvent, Invitation, Membership, Organization, Role, Session, User
from accounts.services.api_keys import api_key_revoke
from accounts.services.memberships import membership_remove
from accounts.services.sessions import sessions_end
from apiplatform.problems import ProblemError


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "full_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name", "email_verified_at")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    can_delete = False  # removing a member is an offboarding: use Memberships (delete), which runs it
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    readonly_fields = ["prefix", "name", "environment", "status", "expires_at", "last_used_at", "revoked_at"]
    fields = [*readonly_fields]  # all shown, all read-only (a copy: the stubs type the two lists differently)
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def status(self, obj):
        return obj.status


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at", "member_count"]
    search_fields = ["slug", "name"]
    readonly_fields = ["created_at", "created_by"]
    inlines = [MembershipInline, ApiKeyInline]

    @admin.display(description="members")
    def member_count(self, obj):
        return obj.memberships.count()

    def has_delete_permission(self, request, obj=None):
        # Deleting would cascade to its API keys without publishing their revocation to the key
        # cache; revoke the keys (action on API keys) to offboard a tenant.
        return False


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "organization__slug"]
    autocomplete_fields = ["user", "organization"]
    list_select_related = ["user", "organization"]

    # Deleting a membership here is an offboarding like the API's: the member's keys are revoked and
    # their pending invitations withdrawn (accounts.services.memberships.membership_remove).
    def delete_model(self, request, obj):
        _offboard_in_admin(request, [obj])

    def delete_queryset(self, request, queryset):
        _offboard_in_admin(request, list(queryset.select_related("user", "organization")))


def _offboard_in_admin(request, memberships) -> None:
    for membership in memberships:
        try:
            result = membership_remove(membership=membership, actor=request.user, actor_role=Role.OWNER)
        except ProblemError as exc:
            messages.error(request, f"{membership}: {exc.detail}")
            continue
        messages.info(
            request,
            f"{membership.user}: {len(result.revoked_keys)} key(s) revoked, "
            f"{len(result.withdrawn_invitations)} invitation(s) withdrawn.",
        )


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "role", "status", "created_at", "expires_at"]
    search_fields = ["email", "organization__slug"]
    list_select_related = ["organization"]
    exclude = ["token_hash"]
    readonly_fields = [
        "organization",
        "email",
        "role",
        "invited_by",
        "created_at",
        "accepted_at",
        "accepted_by",
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description="status")
    def status(self, obj):
        return obj.status


@admin.action(description="Revoke selected keys (refused by every web process within 1 s)")
def revoke_keys(modeladmin, request, queryset):
    count = 0
    for api_key in queryset.filter(revoked_at__isnull=True):
        api_key_revoke(api_key=api_key, actor=request.user, ip_address=request.META.get("REMOTE_ADDR"))
        count += 1
    modeladmin.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "organization", "environment", "status", "expires_at", "last_used_at"]
    list_filter = ["environment", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "key_id", "name", "organization__slug"]
    list_select_related = ["organization"]
    actions = [revoke_keys]
    # Never the secret (not stored) and never the hash; all read-only.
    readonly_fields = [
        "organization",
        "name",
        "prefix",
        "key_id",
        "environment",
        "scopes",
        "allowed_ips",
        "expires_at",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
        "rotated_from",
    ]
    fields = [*readonly_fields]  # a copy: the stubs type `fields` and `readonly_fields` differently

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def status(self, obj):
        return obj.status


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "organization", "actor_label", "action", "target_type", "target_id"]
    list_filter = ["action"]
    search_fields = ["organization__slug", "actor_label", "target_id"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.action(description="End selected sessions (their refresh and access tokens stop working at once)")
def end_sessions(modeladmin, request, queryset):
    count = sessions_end(session_ids=queryset.values_list("pk", flat=True))
    modeladmin.message_user(request, f"{count} session(s) ended.", messages.SUCCESS)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    """Logins of the management API (accounts/services/sessions.py): who, from where, until when, and
    why one ended. Read-only (no token is stored); the action ends sessions, e.g. of a stolen account."""

    list_display = [
        "user",
        "created_at",
        "refreshed_at",
        "expires_at",
        "revoked_at",
        "revoke_reason",
        "ip_address",
    ]
    list_filter = ["revoke_reason", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    actions = [end_sessions]
    exclude = ["refresh_jti"]
    readonly_fields = [
        "user",
        "created_at",
        "refreshed_at",
        "expires_at",
        "revoked_at",
        "revoke_reason",
        "ip_address",
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
