"""Fixtures of the admin's operations console tests."""

from __future__ import annotations

import re

import pytest

#: src/href/action/url() values that leave the site: an absolute URL or a protocol-relative one.
_EXTERNAL = re.compile(
    r"""(?:src|href|action)\s*=\s*["']\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//""", re.I
)


def external_assets(html: str) -> list[str]:
    """Attributes of ``html`` that load or link anything outside the site (the SVG namespace is no URL
    the browser fetches and is not matched: it is an ``xmlns`` attribute)."""
    return [m.group(0) for m in _EXTERNAL.finditer(html)]


@pytest.fixture
def staff_client(client, django_user_model):
    """A staff member without superuser rights (the console needs staff; replay needs the permission)."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(email="op@example.com", password="x" * 12)
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="change_deadletter"))
    client.force_login(user)
    return client
