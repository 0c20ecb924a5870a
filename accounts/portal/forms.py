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


COOLDOWN_CHOICES = [
    ("0", "None"),
    ("300", "5 minutes"),
    ("3600", "1 hour"),
    ("21600", "6 hours"),
    ("86400", "24 hours"),
]


class AlertCreateForm(PortalForm):
    """An alert as a person fills it in. The condition's rules (which members a type needs, the level's
    range) are the management API's (``marketdata.alerts.serializers.ConditionIn``): the page checks
    the condition with it; this form only gathers the fields."""

    coin = forms.CharField(
        label="Coin id", max_length=200, help_text="As in the API, e.g. bitcoin or ethereum."
    )
    name = forms.CharField(
        label="Name", max_length=200, required=False, help_text="Optional, e.g. “BTC above 100k”."
    )
    type = forms.ChoiceField(
        label="Condition", choices=[], widget=forms.Select(attrs={"data-condition-type": ""})
    )
    direction = forms.ChoiceField(
        label="Fires when the value crosses",
        choices=[("above", "above the level"), ("below", "below the level")],
    )
    level = forms.FloatField(
        label="Level",
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text="A price in USD, a percent change, or the indicator's value.",
    )
    window = forms.ChoiceField(
        label="Window",
        choices=[],
        required=False,
        help_text="Change conditions: the % change over this window.",
    )
    indicator = forms.ChoiceField(label="Indicator", choices=[], required=False)
    timeframe = forms.ChoiceField(
        label="Timeframe",
        choices=[],
        required=False,
        help_text="Indicator conditions: closed candles of this timeframe.",
    )
    cooldown_seconds = forms.ChoiceField(
        label="Cooldown", choices=COOLDOWN_CHOICES, initial="0", help_text="No firing again within this time."
    )
    endpoint = forms.ChoiceField(label="Deliver to", choices=[], required=False)
    webhook_url = forms.CharField(
        label="New webhook URL",
        max_length=2000,
        required=False,
        help_text="A public https:// URL; used when “A new webhook URL” is chosen above. Its signing "
        "secret is shown once.",
    )

    def __init__(self, *args, kinds, windows, indicators, timeframes, endpoints, **kwargs):
        super().__init__(*args, **kwargs)
        choices = {
            "type": kinds,
            "window": [("", "—"), *windows],
            "indicator": [("", "—"), *indicators],
            "timeframe": [("", "—"), *timeframes],
            "endpoint": [("", "A new webhook URL"), *endpoints],
        }
        for name, values in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = values
        if endpoints:
            self.fields["endpoint"].initial = endpoints[0][0]

    def condition(self) -> dict:
        """The condition object of the API, with the members of the chosen type only."""
        data = self.cleaned_data
        condition: dict = {"type": data["type"], "direction": data["direction"]}
        if data.get("level") is not None:
            condition["level"] = data["level"]
        members = {"change": ["window"], "indicator": ["indicator", "timeframe"]}.get(data["type"], [])
        for name in members:
            if data.get(name):
                condition[name] = data[name]
        return condition

    def clean(self):
        data = super().clean()
        if not data.get("endpoint") and not (data.get("webhook_url") or "").strip():
            self.add_error(
                "webhook_url", "Give the URL of your webhook receiver (or choose an endpoint above)."
            )
        return data
