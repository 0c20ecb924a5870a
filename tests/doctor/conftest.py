"""Fixtures for the doctor tests. The checks run in threads of their own (each bounded in time), so the
data they read must be committed: tests use ``django_db(transaction=True)``."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.ingestion_tasks.conftest import start_worker, wait_until  # noqa: F401 - fixtures re-exported


@dataclass
class SMTPStub:
    """A loopback SMTP server speaking just enough for smtplib to connect, say EHLO, log in with AUTH
    PLAIN and QUIT. It accepts ``password`` for ``user``; a refused login's reply echoes the password it
    was sent (as a careless server might), so a test can show the doctor never prints it. ``greet=False``
    accepts connections and never answers (a hung server)."""

    user: str = "mailer"
    password: str = "s3cret-smtp-Password"
    greet: bool = True
    port: int = 0
    logins: list[tuple[str, str]] = field(default_factory=list)
    _sock: socket.socket | None = None

    def serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            if not self.greet:
                reader.read()  # until the client gives up and closes
                return
            conn.sendall(b"220 stub ESMTP\r\n")
            for raw in reader:
                line = raw.decode().rstrip("\r\n")
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    conn.sendall(b"250-stub\r\n250 AUTH PLAIN\r\n")
                elif verb == "AUTH":
                    _, user, password = base64.b64decode(line.split()[2]).decode().split("\0")
                    self.logins.append((user, password))
                    if (user, password) == (self.user, self.password):
                        conn.sendall(b"235 2.7.0 Authentication successful\r\n")
                    else:
                        conn.sendall(f"535 5.7.8 {user}/{password} refused\r\n".encode())
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")


@pytest.fixture
def smtp_server() -> Iterator[SMTPStub]:
    stub = SMTPStub()
    sock = socket.create_server(("127.0.0.1", 0))
    stub._sock, stub.port = sock, sock.getsockname()[1]
    threading.Thread(target=stub.serve, daemon=True).start()
    try:
        yield stub
    finally:
        sock.close()
