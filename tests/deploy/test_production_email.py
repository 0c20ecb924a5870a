"""Production email settings: the SMTP backend needs EMAIL_HOST, and STARTTLS and implicit TLS are
refused together, at start-up, naming the variables (the same way as the other production settings)."""

from __future__ import annotations

from tests.conftest import production_environment, run_python

PRODUCTION = {
    **production_environment(),
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": None,
    "EMAIL_USE_TLS": None,
    "EMAIL_USE_SSL": None,
    "EMAIL_TIMEOUT": None,
    "EMAIL_HOST_PASSWORD": None,
}
SHOW = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.EMAIL_TIMEOUT,"
    " s.SERVER_EMAIL == s.DEFAULT_FROM_EMAIL)"
)


def test_smtp_in_production_without_email_host_refuses_to_start():
    for host in (None, ""):
        result = run_python(SHOW, {**PRODUCTION, "EMAIL_HOST": host})
        assert result.returncode != 0, result.stdout
        assert "EMAIL_HOST must be set when DEBUG=0" in result.stderr


def test_smtp_in_production_with_a_host_starts_with_a_bounded_timeout():
    result = run_python(SHOW, {**PRODUCTION, "EMAIL_HOST": "smtp.example.com", "EMAIL_PORT": "587",
                               "EMAIL_USE_TLS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["smtp.example.com", "587", "True", "10.0", "True"]


def test_another_backend_in_production_needs_no_host_and_development_defaults_to_localhost():
    console = {**PRODUCTION, "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    assert run_python(SHOW, console).returncode == 0
    development = run_python(SHOW, {**PRODUCTION, "DEBUG": "1"})
    assert development.returncode == 0, development.stderr
    assert development.stdout.split()[0] == "localhost"


def test_starttls_and_implicit_tls_together_are_refused():
    result = run_python(SHOW, {**PRODUCTION, "EMAIL_HOST": "smtp.example.com", "EMAIL_USE_TLS": "1",
                               "EMAIL_USE_SSL": "1"})  # fmt: skip
    assert result.returncode != 0
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL are mutually exclusive" in result.stderr
