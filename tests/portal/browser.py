"""Helpers of the portal's browser tests: Debian's Chromium driven by Playwright (sync API), axe-core
from the npm registry injected into each page, screenshots under test-artifacts/portal/."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from playwright.sync_api import Page

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (scripts/lib.sh ensure_chromium); never downloaded
NODE_PREFIX = REPO_ROOT / ".run" / "node"  # git-ignored; scripts/lib.sh ensure_axe_core fills it
AXE_JS = NODE_PREFIX / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "portal"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


def axe_source() -> str:
    """axe-core's browser bundle, installed from the npm registry on first use (idempotent)."""
    if not AXE_JS.exists():
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-save",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NODE_PREFIX),
                "axe-core@4",
            ],
            check=True,
            timeout=300,
        )
    return AXE_JS.read_text()


def axe_check(page: Page, source: str, name: str) -> None:
    """No serious or critical axe-core violation on the current page. The script is evaluated through
    the DevTools protocol (not a <script> tag), so the page's CSP stays as strict as in production."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(source + "\n;0")
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    bad = [v for v in result if v.get("impact") in ("serious", "critical")]
    summary = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"][:5]],
        }
        for v in bad
    ]
    assert not bad, f"axe-core on {name} ({page.url}):\n{json.dumps(summary, indent=2)}"


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    """A screenshot under test-artifacts/portal/ (``full_page=False`` for a page too tall for one
    image, such as Redoc's rendering of the whole API reference)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^a-z0-9_-]+", "-", name.lower())
    page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=full_page)


def fits_width(page: Page) -> bool:
    """Nothing wider than the viewport (no horizontal scrolling of the whole page)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def mails(directory: Path) -> list[str]:
    """Every message the file email backend wrote (one file per connection, messages separated)."""
    return [p.read_text(errors="replace") for p in sorted(directory.glob("*")) if p.is_file()]
