"""manage.py create_api_key (billing: it can put the new organization on a plan)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from accounts import keyformat, keys
from accounts.models import ApiKey, Organization
from billing.models import OrganizationPlan


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip().splitlines()


@pytest.mark.django_db
def test_create_api_key_prints_the_key_alone_on_the_last_line():
    lines = run("--org", "demo", "--create-org", "--name", "demo key")
    key = lines[-1]
    parsed = keyformat.parse_key(key)
    row = ApiKey.objects.get(key_id=parsed.key_id)
    assert row.organization == Organization.objects.get(slug="demo")
    assert row.secret_hash == keyformat.hash_key(key)
    assert keys.verify(parsed, None)[0] == "ok"
    test_key = run("--org", "demo", "--test")[-1]
    assert test_key.startswith("cs_test_")


@pytest.mark.django_db
def test_create_api_key_refuses_unknown_org_without_create_flag():
    with pytest.raises(CommandError, match="--create-org"):
        run("--org", "nobody")


@pytest.mark.django_db
def test_create_api_key_plan_flag_sets_the_plan_all_or_nothing():
    with pytest.raises(CommandError):
        run("--org", "planned", "--create-org", "--plan", "no-such-plan")
    assert not Organization.objects.filter(slug="planned").exists()  # all or nothing
    key = run("--org", "planned", "--create-org", "--plan", "developer")[-1]
    assert keyformat.parse_key(key)
    org = Organization.objects.get(slug="planned")
    assert OrganizationPlan.objects.get(organization_id=org.pk).plan.name == "developer"
