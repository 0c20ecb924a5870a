"""Two-factor authentication of the portal's login (docs/portal.md, "Two-factor authentication"):
a TOTP device (django-otp's ``otp_totp``: RFC 6238, 30-second steps, one step of drift either way,
a used code refused again, failures throttled with growing delays) and ten single-use recovery codes
(``otp_static``). Optional per user. Enabling and disabling are audited in every organization of the
user (its owners see it), with a code, never the secret."""

from __future__ import annotations

from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership, User
from accounts.services.audit import audit_record

RECOVERY_CODES = 10
_NAME = "Authenticator app"


def _audit(*, user: User, action: str, ip_address: str | None) -> None:
    for membership in Membership.objects.select_related("organization").filter(user=user):
        audit_record(
            organization=membership.organization,
            actor=user,
            action=action,
            target_type="user",
            target_id=user.pk,
            ip_address=ip_address,
        )


def two_factor_enabled(*, user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def two_factor_enrol_start(*, user: User) -> TOTPDevice:
    """A new, unconfirmed TOTP device (its secret to show as QR code and text); replaces an earlier
    unconfirmed one. Refused (ValueError) while two-factor authentication is on."""
    if two_factor_enabled(user=user):
        raise ValueError("two-factor authentication is already on")
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=_NAME, confirmed=False)


def two_factor_pending(*, user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).first()


@transaction.atomic
def two_factor_enrol_confirm(*, user: User, code: str, ip_address: str | None = None) -> list[str] | None:
    """Confirm the pending device with a code from the app: two-factor authentication is on, and
    the recovery codes (shown once: only django-otp's rows hold them) are returned. None if the code
    is wrong (or no device is pending)."""
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
    if device is None or not device.verify_token(_digits(code)):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    StaticDevice.objects.filter(user=user).delete()
    static = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=static, token=c) for c in codes])
    _audit(user=user, action="user.two_factor_enabled", ip_address=ip_address)
    return codes


def _digits(code: str) -> str:
    return "".join(code.split())


def two_factor_verify(*, user: User, code: str) -> TOTPDevice | StaticDevice | None:
    """The device a code from the app, or an unused recovery code, belongs to (a recovery code is
    used up); None if it matches neither. django-otp throttles the TOTP device after failures."""
    code = _digits(code)
    if not code:
        return None
    # A code from the app is 6 digits, a recovery code 8 letters/digits: each goes to its own device
    # only, so a recovery code does not count as a failure (throttle) of the app's device.
    devices: list[TOTPDevice] | list[StaticDevice]
    if code.isdigit() and len(code) == 6:
        devices = list(TOTPDevice.objects.filter(user=user, confirmed=True))
    else:
        devices = list(StaticDevice.objects.filter(user=user, confirmed=True))
    return next((d for d in devices if d.verify_token(code)), None)


@transaction.atomic
def two_factor_disable(*, user: User, code: str, ip_address: str | None = None) -> bool:
    """Turn two-factor authentication off with a current code (or a recovery code); False if wrong."""
    if two_factor_verify(user=user, code=code) is None:
        return False
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    _audit(user=user, action="user.two_factor_disabled", ip_address=ip_address)
    return True
