"""deploy/prometheus/: the alert rules are valid (promtool check rules) and fire when they should
(promtool test rules: rules_test.yml feeds series and expects alerts). scripts/test.sh installs
promtool (Debian package ``prometheus``); elsewhere the test is skipped with the reason."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

RULES_DIR = REPO_ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus; scripts/test.sh does it)"
)


def _promtool(*args: str) -> subprocess.CompletedProcess:
    command = [PROMTOOL or "promtool", *args]
    return subprocess.run(command, cwd=RULES_DIR, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_rules_are_valid():
    result = _promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rules_fire_on_the_failures_they_name():
    result = _promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_rules_use_is_served_and_documented():
    rules = (RULES_DIR / "rules.yml").read_text()
    used = set(re.findall(r"\bcandlestack_[a-z0-9_]+", rules))
    source = (REPO_ROOT / "apiplatform" / "metrics.py").read_text() + (
        REPO_ROOT / "apiplatform" / "telemetry.py"
    ).read_text()
    docs = (REPO_ROOT / "docs" / "operations.md").read_text()
    for name in sorted(used):
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert f'"{base}' in source, f"{name}: no such metric in apiplatform/metrics.py or telemetry.py"
        assert base in docs, f"{name}: not documented in docs/operations.md"
    assert Path(RULES_DIR / "scrape.example.yml").exists()
