"""The portal's forms: they parse what a person typed and say what is wrong next to the field. The
rules (password strength, unique email, scopes, IP ranges, roles...) stay in the services; their
refusals come back onto the form through ``accounts.portal.errors.field_errors``."""

from __future__ import annotations

from django import forms

from accounts import principal
from accounts.models import Role


class PortalForm(forms.Form):
    """Labels without Django's trailing colon."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


_ROLE_HELP: dict[str, str] = {
    Role.OWNER: "owner: everything, including billing and owners",
    Role.ADMIN: "admin: members, keys and settings; no purchases",
    Role.DEVELOPER: "developer: API keys and usage",
    Role.BILLING: "billing: plan, invoices and usage",
}


class SignupForm(PortalForm):
    email = forms.EmailField(label="Email address", max_length=254)
    password = forms.CharField(
        label="Password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters; not a common password.",
    )
    organization_name = forms.CharField(
        label="Organization name", max_length=100, required=False, help_text="Your company or project."
    )
    full_name = forms.CharField(label="Your name", max_length=150, required=False)
    invitation = forms.CharField(widget=forms.HiddenInput, required=False)

    def clean(self):
        data = super().clean()
        if not data.get("invitation") and not (data.get("organization_name") or "").strip():
            self.add_error("organization_name", "Name your organization (you can rename it later).")
        return data


class LoginForm(PortalForm):
    email = forms.EmailField(label="Email address", max_length=254)
    password = forms.CharField(
        label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


_NEW_PASSWORD_HELP = "At least 10 characters; not a common password, not like your email address."  # noqa: S105


class PasswordChangeForm(PortalForm):
    current_password = forms.CharField(
        label="Current password", widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    new_password = forms.CharField(
        label="New password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_NEW_PASSWORD_HELP,
    )


class PasswordResetForm(PortalForm):
    email = forms.EmailField(label="Email address", max_length=254)


class PasswordResetConfirmForm(PortalForm):
    token = forms.CharField(
        label="Reset code from the email",
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    new_password = forms.CharField(
        label="New password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_NEW_PASSWORD_HELP,
    )


class TwoFactorForm(PortalForm):
    code = forms.CharField(
        label="Code",
        max_length=20,
        help_text="The 6 digits your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "spellcheck": "false"}
        ),
    )


EXPIRY_CHOICES = [
    ("", "Never"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
]


class KeyCreateForm(PortalForm):
    name = forms.CharField(label="Name", max_length=100, help_text="What uses it, e.g. “production server”.")
    environment = forms.ChoiceField(
        label="Environment", choices=[("live", "live"), ("test", "test")], initial="live"
    )
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=[(s, s) for s in principal.KEY_SCOPES],
        initial=[principal.SCOPE_MARKET_DATA_READ],
        widget=forms.CheckboxSelectMultiple,
    )
    expires_in_days = forms.ChoiceField(label="Expires", choices=EXPIRY_CHOICES, required=False)
    allowed_ips = forms.CharField(
        label="IP allow-list",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional: one IP address or CIDR range per line (e.g. 203.0.113.0/24). "
        "Empty: any address.",
    )

    def clean_allowed_ips(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_ips") or ""
        return [line.strip() for line in raw.replace(",", "\n").splitlines() if line.strip()]


OVERLAP_CHOICES = [
    ("0", "Stop the old key now"),
    ("3600", "Keep the old key 1 hour"),
    ("86400", "Keep the old key 24 hours"),
    ("604800", "Keep the old key 7 days"),
]


class KeyRotateForm(PortalForm):
    overlap = forms.ChoiceField(
        label="Overlap",
        choices=OVERLAP_CHOICES,
        initial="86400",
        help_text="How long the old key keeps working.",
    )


def role_choices(actor_role: str) -> list[tuple[str, str]]:
    """Roles the actor may hand out: only an owner grants owner (accounts.roles.check_owner_rule)."""
    return [(r, _ROLE_HELP[r]) for r in Role.values if r != Role.OWNER or actor_role == Role.OWNER]


class InviteForm(PortalForm):
    email = forms.EmailField(label="Email address", max_length=254)
    role = forms.ChoiceField(label="Role")

    def __init__(self, *args, actor_role: str, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["role"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = role_choices(actor_role)
        field.initial = Role.DEVELOPER


class RoleForm(PortalForm):
    role = forms.ChoiceField(label="Role")

    def __init__(self, *args, actor_role: str, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["role"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = role_choices(actor_role)
