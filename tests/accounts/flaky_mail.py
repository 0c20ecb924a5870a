"""A mail server that refuses the first ``FlakyBackend.failures`` messages (tests of retries)."""

from __future__ import annotations

import smtplib

from django.core.mail.backends.locmem import EmailBackend


class FlakyBackend(EmailBackend):
    failures = 0  # set by the test
    attempts = 0

    def send_messages(self, messages):
        type(self).attempts += 1
        if type(self).attempts <= type(self).failures:
            raise smtplib.SMTPServerDisconnected("mail server went away")
        return super().send_messages(messages)
