"""Production mode refuses unsafe settings; with real values `check --deploy` is clean."""

from tests.conftest import REPO_ROOT, production_environment, run_manage, run_python

PRODUCTION = production_environment()
GOOD_KEY = PRODUCTION["SECRET_KEY"]
SETUP = "import django; django.setup(); print('started')"


def test_production_refuses_to_start_without_a_secret_key():
    result = run_python(SETUP, {**PRODUCTION, "SECRET_KEY": None})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG=0" in result.stderr


def test_production_refuses_a_weak_or_development_secret_key():
    for weak in ["short", "dev-only-insecure-key-never-use-in-production", "a" * 60]:
        result = run_python(SETUP, {**PRODUCTION, "SECRET_KEY": weak})
        assert result.returncode != 0, weak
        assert "SECRET_KEY" in result.stderr


def test_production_refuses_wildcard_or_missing_allowed_hosts():
    for hosts in [None, "*"]:
        result = run_python(SETUP, {**PRODUCTION, "ALLOWED_HOSTS": hosts})
        assert result.returncode != 0
        assert "ALLOWED_HOSTS" in result.stderr


def test_production_starts_with_real_values():
    result = run_python(SETUP, PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_check_deploy_is_clean_in_production_mode():
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_bad_boolean_is_a_clear_error():
    result = run_python(SETUP, {**PRODUCTION, "DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_import_uuid_works_from_the_repo_root():
    # A top-level `platform` package would shadow the standard library and break this.
    result = run_python("import uuid, platform; print(platform.system(), uuid.uuid4())", {})
    assert result.returncode == 0, result.stderr
    assert not (REPO_ROOT / "platform").exists()
