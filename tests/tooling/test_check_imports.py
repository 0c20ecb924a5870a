"""scripts/check_imports.py on small package trees built in tmp_path: each rule finds its breach,
the allowed services -> tasks loop and a clean tree pass."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO_ROOT

CHECKER = REPO_ROOT / "scripts" / "check_imports.py"
PACKAGES = ["apiplatform", "accounts", "marketdata", "ingestion"]


def write_tree(root: Path, files: dict[str, str]) -> None:
    """A package tree: every package of PACKAGES gets an __init__.py, plus the given files."""
    for package in PACKAGES:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").touch()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        init = path.parent / "__init__.py"
        if not init.exists():
            init.touch()
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def run_checker(root: Path, *packages: str) -> subprocess.CompletedProcess[str]:
    # A child process: the real packages of this repository are imported in this one, and the
    # checker must find the fake ones under the same names.
    return subprocess.run(
        [sys.executable, str(CHECKER), "--root", str(root), *(packages or PACKAGES)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CLEAN = {
    "apiplatform/settings.py": """
        import os
        RATE = os.environ.get("RATE", "1/s")
        """,
    "apiplatform/problems.py": """
        def problem(slug):
            return {"type": slug}
        """,
    "marketdata/models.py": """
        TABLE_SQL = "SELECT * FROM marketdata_candle"
        def _helper():
            return 1
        """,
    "marketdata/selectors.py": """
        from marketdata.models import _helper, TABLE_SQL

        def candles():
            return TABLE_SQL, _helper()
        """,
    "ingestion/services.py": """
        '''Reads go through marketdata (not marketdata_candle directly).'''
        from django.conf import settings
        from marketdata import selectors
        from apiplatform.problems import problem

        def refresh():
            from ingestion.tasks import refresh_task  # the allowed loop: enqueue its own task
            refresh_task.delay()
            return selectors.candles(), settings.RATE, getattr(settings, "RATE"), problem("x")
        """,
    "ingestion/tasks.py": """
        from ingestion import services

        def refresh_task():
            return services.refresh()
        """,
    "ingestion/migrations/0001_initial.py": """
        SQL = "ALTER TABLE marketdata_candle ADD COLUMN x int"
        """,
    "accounts/models.py": """
        class User:
            _meta = None

        def _private():
            return 2
        """,
    "accounts/services.py": """
        from accounts.models import _private, User

        def count():
            return _private(), User._meta
        """,
}


def test_a_clean_tree_passes(tmp_path):
    write_tree(tmp_path, CLEAN)
    result = run_checker(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "0 finding(s)" in result.stderr


def test_finds_a_cycle_through_a_function_level_import(tmp_path):
    write_tree(
        tmp_path,
        {
            **CLEAN,
            "marketdata/services.py": """
                from marketdata import screener

                def build():
                    return screener.rank()
                """,
            "marketdata/screener.py": """
                def rank():
                    from marketdata.services import build  # inside a function: still an import
                    return build
                """,
        },
    )
    result = run_checker(tmp_path)
    assert result.returncode == 1
    cycles = [line for line in result.stdout.splitlines() if "[cycle]" in line]
    assert len(cycles) == 1, result.stdout
    assert "marketdata.services" in cycles[0] and "marketdata.screener" in cycles[0]


def test_services_importing_its_tasks_at_module_level_is_a_cycle(tmp_path):
    files = dict(CLEAN)
    files["ingestion/services.py"] = """
        from ingestion.tasks import refresh_task

        def refresh():
            return refresh_task
        """
    write_tree(tmp_path, files)
    result = run_checker(tmp_path)
    assert result.returncode == 1
    assert "[cycle]" in result.stdout
    assert "ingestion.services" in result.stdout and "ingestion.tasks" in result.stdout


def test_only_services_may_import_its_own_tasks_inside_a_function(tmp_path):
    files = dict(CLEAN)
    files["ingestion/quality.py"] = """
        def check():
            from ingestion.tasks import refresh_task
            return refresh_task
        """
    files["ingestion/tasks.py"] = """
        from ingestion import quality, services

        def refresh_task():
            return services.refresh(), quality.check()
        """
    write_tree(tmp_path, files)
    result = run_checker(tmp_path)
    assert result.returncode == 1
    assert "[cycle]" in result.stdout
    assert "ingestion.quality" in result.stdout


def test_finds_another_apps_private_names(tmp_path):
    files = dict(CLEAN)
    files["accounts/limits.py"] = """
        from apiplatform import problems
        from marketdata.models import _helper
        import marketdata.models as md

        def key():
            return problems._registry, _helper, md._helper
        """
    files["apiplatform/problems.py"] = """
        _registry = {}

        def problem(slug):
            return {"type": slug}
        """
    write_tree(tmp_path, files)
    result = run_checker(tmp_path)
    assert result.returncode == 1
    private = sorted(line for line in result.stdout.splitlines() if "[private]" in line)
    assert private == [
        "accounts/limits.py:3: [private] uses another app's private name marketdata.models._helper",
        "accounts/limits.py:7: [private] uses another app's private name apiplatform.problems._registry",
        "accounts/limits.py:7: [private] uses another app's private name marketdata.models._helper",
    ]


def test_finds_getattr_settings_with_a_default_outside_the_settings(tmp_path):
    files = dict(CLEAN)
    files["apiplatform/settings.py"] = """
        import os
        RATE = getattr(os, "RATE", "1/s")  # the settings module itself may
        """
    files["ingestion/quality.py"] = """
        from django.conf import settings as conf

        GRACE = getattr(conf, "QUALITY_GRACE_MINUTES", 5)
        """
    write_tree(tmp_path, files)
    result = run_checker(tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "ingestion/quality.py:4: [settings-default] getattr(settings, 'QUALITY_GRACE_MINUTES', default): "
        "declare the setting in apiplatform.settings and read settings.NAME"
    ]


def test_finds_sql_on_marketdata_tables_outside_marketdata(tmp_path):
    files = dict(CLEAN)
    files["ingestion/quality.py"] = '''
        def gaps(cursor, coin):
            cursor.execute(
                f"""SELECT bucket_start FROM {'public.'}marketdata_candle
                    WHERE coin_id = %s""",
                [coin],
            )
        '''
    write_tree(tmp_path, files)
    result = run_checker(tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "[marketdata-sql]" in lines[0], result.stdout
    assert lines[0].startswith("ingestion/quality.py:") and "'marketdata_candle'" in lines[0]


def test_the_repository_config_lists_every_apiplatform_module(tmp_path):
    files = dict(CLEAN)
    files["apiplatform/urls.py"] = "from accounts import services\n"
    files["apiplatform/newthing.py"] = "X = 1\n"
    write_tree(tmp_path, files)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.importlinter]
            root_packages = ["apiplatform", "accounts", "marketdata", "ingestion"]

            [[tool.importlinter.contracts]]
            id = "apiplatform-plumbing"
            name = "plumbing"
            type = "forbidden"
            source_modules = ["apiplatform.problems", "apiplatform.jobs.**"]
            forbidden_modules = ["accounts", "marketdata", "ingestion"]
            """
        ),
        encoding="utf-8",
    )
    result = run_checker(tmp_path)  # packages given; the contract still comes from pyproject.toml
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "apiplatform/newthing.py: [unclassified] apiplatform.newthing is neither a composition point "
        "(COMPOSITION_POINTS in scripts/check_imports.py) nor in the 'apiplatform-plumbing' contract"
    ]
