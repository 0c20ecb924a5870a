"""The production topology of deploy/ is consistent with the code: the example environment names only
settings the code declares and loads as production settings; the systemd units start commands that
exist, a worker per queue the code declares and one beat; the worker and beat units' own commands,
started as they are written, are seen alive by ``manage.py doctor``; ``systemd-analyze verify`` when
systemd is installed."""

from __future__ import annotations

import configparser
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import get_commands
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apiplatform.jobs.base import QUEUES
from apiplatform.jobs.schedules import schedules_setup
from apiplatform.ops import doctor
from tests.conftest import REPO_ROOT, test_database_url
from tests.ingestion_tasks.conftest import purge_broker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOY = REPO_ROOT / "deploy"
UNITS = DEPLOY / "systemd"
ENV_EXAMPLE = DEPLOY / "candlestack.env.example"
INSTALL_ROOT = "/srv/candlestack"  # where the units expect the checkout (and its .venv)
ENV_PATH = "/etc/candlestack/candlestack.env"
#: What every production deployment must set (the rest has working defaults).
REQUIRED = {
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "JWT_SIGNING_KEY",
    "API_KEY_PEPPER",
    "ALERTS_SECRET_KEYS",
    "PUBLIC_BASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "COINGECKO_API_KEYS",
    "LOG_FORMAT",
    "TRUSTED_PROXY_DEPTH",
}


def declared_settings() -> set[str]:
    """Environment variables the code reads: apiplatform/settings.py's env helpers, gunicorn.conf.py."""
    settings_py = (REPO_ROOT / "apiplatform" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|float|list|cidrs)\(\s*"([A-Z0-9_]+)"', settings_py))
    gunicorn = (DEPLOY / "gunicorn.conf.py").read_text()
    names |= set(re.findall(r'os\.environ\.get\("([A-Z0-9_]+)"', gunicorn))
    return names | {"DJANGO_SETTINGS_MODULE"}


def env_example() -> tuple[dict[str, str], set[str]]:
    """(the names set, with their values; the names only shown in comments as defaults)."""
    values, commented = {}, set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line):
            values[match[1]] = match[2]
        elif match := re.match(r"^# ([A-Z][A-Z0-9_]*)=", line):
            commented.add(match[1])
    return values, commented


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def exec_starts(name: str) -> list[list[str]]:
    """The unit's ExecStart command lines (configparser keeps only the last of repeated keys)."""
    lines = re.findall(r"^ExecStart=(.+)$", (UNITS / name).read_text(), re.M)
    return [shlex.split(line) for line in lines]


def local(argv: list[str], instance: str = "", environment: dict[str, str] | None = None) -> list[str]:
    """A unit's command as this checkout runs it: install root -> repository, %i/%H/${VAR} expanded."""
    out = []
    for arg in argv:
        arg = (
            arg.replace(INSTALL_ROOT, str(REPO_ROOT))
            .replace("%i", instance)
            .replace("%H", socket.gethostname())
        )
        arg = re.sub(r"\$\{(\w+)\}", lambda m: (environment or {})[m[1]], arg)
        out.append(arg)
    return out


# --- the environment file ----------------------------------------------------------------------------
def test_every_name_in_the_env_example_is_a_setting_the_code_declares():
    values, commented = env_example()
    unknown = sorted((set(values) | commented) - declared_settings())
    assert not unknown, f"not read by the code: {unknown}"
    assert not REQUIRED - set(values), f"a deployment must set: {sorted(REQUIRED - set(values))}"


def test_the_env_example_holds_no_secret_and_loads_as_production_settings(tmp_path):
    values, _ = env_example()
    for name in (
        "SECRET_KEY",
        "JWT_SIGNING_KEY",
        "API_KEY_PEPPER",
        "ALERTS_SECRET_KEYS",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
    ):
        assert values[name].startswith("<"), f"{name} must be a placeholder in the example"
    filled = {
        **values,
        **{
            name: secrets.token_urlsafe(64)
            for name in ("SECRET_KEY", "JWT_SIGNING_KEY", "API_KEY_PEPPER", "ALERTS_SECRET_KEYS")
        },
        "DATABASE_URL": test_database_url(),
        "STATIC_ROOT": str(tmp_path),
    }
    env = {k: v for k, v in os.environ.items() if k not in declared_settings()} | filled
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DEBUG, settings.LOG_FORMAT)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "json"]
    # A placeholder left in place is refused at start-up, naming it.
    weak = env | {"SECRET_KEY": values["SECRET_KEY"]}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=weak,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


# --- the units -------------------------------------------------------------------------------------------
def test_units_read_the_env_file_and_start_commands_that_exist():
    commands = get_commands()
    for path in sorted(UNITS.glob("*.service")):
        service = unit(path.name)["Service"]
        assert service["EnvironmentFile"] == ENV_PATH, path.name
        assert service["WorkingDirectory"] == INSTALL_ROOT, path.name
        defaults = dict(line.split("=", 1) for line in [service.get("Environment", "")] if line)
        for argv in exec_starts(path.name):
            program = Path(local(argv, environment=defaults)[0])
            assert program.is_file() and os.access(program, os.X_OK), (
                f"{path.name}: {program} is not executable"
            )
            for var in re.findall(r"\$\{(\w+)\}", " ".join(argv)):
                assert var in defaults, f"{path.name}: ${{{var}}} has no default in the unit"
            if "manage.py" in argv:
                assert argv[argv.index("manage.py") + 1] in commands, f"{path.name}: {argv}"


def test_the_target_runs_one_worker_per_queue_and_exactly_one_beat():
    wants = " ".join(
        v for k, v in re.findall(r"^(Wants)=(.+)$", (UNITS / "candlestack.target").read_text(), re.M)
    )
    workers = re.findall(r"candlestack-worker@([\w-]+)\.service", wants)
    assert sorted(workers) == sorted(QUEUES)
    assert wants.split().count("candlestack-beat.service") == 1
    assert re.findall(r"candlestack-web@(\d+)\.service", wants) == ["8000", "8001"]
    web = exec_starts("candlestack-web@.service")
    assert web == [[f"{INSTALL_ROOT}/scripts/serve.sh", "--bind", "127.0.0.1:%i"]]


def test_the_web_unit_arguments_are_accepted_by_gunicorn():
    argv = local(exec_starts("candlestack-web@.service")[0], instance="8001")
    gunicorn = [
        str(REPO_ROOT / ".venv/bin/gunicorn"),
        "--check-config",
        "--config",
        str(DEPLOY / "gunicorn.conf.py"),
        *argv[1:],
        "apiplatform.wsgi:application",
    ]
    result = subprocess.run(gunicorn, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def _start(argv: list[str], tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DB_POOL_MAX_SIZE": "2",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, log


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def own_broker():
    from django.conf import settings

    if settings.CELERY_BROKER_URL.rstrip("/").endswith("/0"):
        pytest.skip("needs its own broker database: CELERY_BROKER_URL=redis://.../<n>, n > 0")
    purge_broker()
    yield
    purge_broker()


def test_the_worker_unit_command_serves_its_queue(tmp_path, own_broker):
    service = unit("candlestack-worker@.service")["Service"]
    environment = dict([service["Environment"].split("=", 1)])
    argv = local(exec_starts("candlestack-worker@.service")[0], instance="backfill", environment=environment)
    proc, log = _start(argv, tmp_path, "worker")
    try:
        wait_until(
            lambda: " ready." in log.read_text() or proc.poll() is not None, timeout=60, message="worker"
        )
        assert proc.poll() is None, log.read_text()[-3000:]
        results = {r.check: r for r in doctor.run_checks(only=["workers"])}
        assert results["workers:backfill"].status == doctor.OK, results
        assert f"backfill@{socket.gethostname()}" in results["workers:backfill"].detail
    finally:
        _stop(proc)


def test_the_beat_unit_command_ticks_where_the_doctor_looks(tmp_path, own_broker):
    """django-celery-beat writes last_run_at when it syncs: every 3 minutes and when it stops (SIGTERM,
    as systemd stops it). The test stops it after its first sends instead of waiting 3 minutes."""
    schedules_setup()
    # Due now (a fresh schedule would wait one interval): beat sends them at its first tick.
    long_ago = timezone.now() - timedelta(minutes=30)
    PeriodicTask.objects.update(last_run_at=long_ago)
    assert doctor.run_checks(only=["beat"])[0].status == doctor.FAIL
    proc, log = _start(local(exec_starts("candlestack-beat.service")[0]), tmp_path, "beat")
    try:
        wait_until(
            lambda: "(every minute)" in log.read_text() or proc.poll() is not None,
            timeout=60,
            message="beat's first sends",
        )
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        _stop(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert doctor.run_checks(only=["beat"])[0].status == doctor.OK
    # Stopped: silent from now on; BEAT_SILENT_AFTER later the doctor names it.
    later = timezone.now() + doctor.BEAT_SILENT_AFTER + timedelta(minutes=1)
    assert "silent" in doctor.run_checks(only=["beat"], now=later)[0].detail


def test_systemd_analyze_verifies_the_units(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    for path in UNITS.iterdir():
        text = path.read_text().replace(INSTALL_ROOT, str(REPO_ROOT)).replace(ENV_PATH, str(ENV_EXAMPLE))
        (tmp_path / path.name).write_text(text)
    names = [
        "candlestack-web@8000.service",
        "candlestack-worker@default.service",
        "candlestack-beat.service",
        "candlestack-release.service",
        "candlestack.target",
    ]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0 and "Failed to" in result.stderr and "bus" in result.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
