"""The doctor's ``email`` check: the backend, and for SMTP a real connection (EHLO, login, QUIT) to a
loopback SMTP server started by the test; refused, hung and misconfigured servers fail within the
check's time, and the SMTP password never appears in what the doctor prints."""

from __future__ import annotations

import json
import socket
from io import StringIO

import pytest
from django.core.management import call_command

from apiplatform.ops import doctor

pytestmark = pytest.mark.django_db(transaction=True)

SMTP = "django.core.mail.backends.smtp.EmailBackend"


def email(**kwargs) -> doctor.Result:
    (result,) = doctor.run_checks(only=["email"], **kwargs)
    return result


@pytest.fixture
def smtp_settings(settings, smtp_server):
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = smtp_server.user, smtp_server.password
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 10
    return settings


def test_smtp_connection_opens_and_logs_in(smtp_settings, smtp_server):
    result = email()
    assert result.status == doctor.OK, result
    assert f"127.0.0.1:{smtp_server.port} (no TLS) as mailer: connected, logged in" in result.detail
    assert smtp_server.logins == [("mailer", smtp_server.password)]  # it really logged in
    assert smtp_server.password not in result.detail


def test_refused_login_fails_and_the_password_is_never_printed(smtp_settings, smtp_server):
    wrong = "wrong-Password-echoed-back"
    smtp_settings.EMAIL_HOST_PASSWORD = wrong
    result = email()
    assert result.status == doctor.FAIL
    assert "SMTPAuthenticationError: 535" in result.detail
    assert smtp_server.logins == [("mailer", wrong)]  # the server echoed it in its refusal ...
    assert wrong not in result.detail and "***" in result.detail  # ... the doctor did not

    for args in ([], ["--json"]):
        out = StringIO()
        with pytest.raises(SystemExit):
            call_command("doctor", "--check", "email", *args, stdout=out)
        assert wrong not in out.getvalue() and "SMTPAuthenticationError" in out.getvalue()
    assert json.loads(out.getvalue())[0]["status"] == "fail"


def test_nobody_listening_fails(smtp_settings, closed_port):
    smtp_settings.EMAIL_PORT = closed_port
    result = email()
    assert result.status == doctor.FAIL
    assert "ConnectionRefusedError" in result.detail


def test_a_server_that_never_answers_fails_on_the_email_timeout(smtp_settings, smtp_server):
    smtp_server.greet = False
    smtp_settings.EMAIL_TIMEOUT = 0.3
    result = email(timeout=5)  # the check's own SMTP timeout answers, not the doctor's bound
    assert result.status == doctor.FAIL
    assert "TimeoutError" in result.detail or "timed out" in result.detail, result.detail


def test_the_doctor_timeout_bounds_the_smtp_timeout(smtp_settings, smtp_server):
    smtp_server.greet = False
    smtp_settings.EMAIL_TIMEOUT = 60
    result = email(timeout=1)
    assert result.status == doctor.FAIL  # timed out inside the check or at the doctor's bound


def test_misconfigured_smtp_fails_without_connecting(smtp_settings, smtp_server):
    smtp_settings.EMAIL_USE_TLS = smtp_settings.EMAIL_USE_SSL = True
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL" in email().detail
    smtp_settings.EMAIL_USE_SSL = False
    smtp_settings.EMAIL_HOST = ""
    result = email()
    assert result.status == doctor.FAIL and "EMAIL_HOST" in result.detail
    assert smtp_server.logins == []


def test_a_backend_that_does_not_deliver_is_a_warning_in_production_only(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    settings.DEBUG = True
    assert email().status == doctor.OK
    settings.DEBUG = False
    result = email()
    assert result.status == doctor.WARN
    assert "console.EmailBackend" in result.detail and "not delivered" in result.detail


def test_the_stub_is_a_real_smtp_server(smtp_server):
    """The stand-in answers on a socket like any SMTP server (guards the tests above)."""
    with socket.create_connection(("127.0.0.1", smtp_server.port), timeout=5) as sock:
        assert sock.recv(100).startswith(b"220 ")
