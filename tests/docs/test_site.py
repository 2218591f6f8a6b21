"""The documentation site builds with `mkdocs build --strict` (a broken link or anchor, a page missing from the
navigation, any warning fails `make test`), its generated reference pages cover the code, and two of its pages
open in real headless Chromium (Debian's) from `file://` with the network off: no console error, the navigation
there.  The screenshots are kept in the test's directory and copied to /tmp/docs-shots/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.pages import DOCS
from tests.support.browser import visit
from tests.support.cli import ROOT

pytestmark = pytest.mark.processes

MKDOCS = str(Path(sys.executable).with_name("mkdocs"))
SHOTS = Path("/tmp/docs-shots")
GENERATED = ("reference/activities.md", "reference/cli.md", "reference/configuration.md")
# What a person sees of the navigation: the primary nav's section titles and the number of links in it.
NAVIGATION = """JSON.stringify({
  entries: [...document.querySelectorAll('nav.md-nav--primary .md-nav__link')].map(e => e.textContent.trim()),
  links: document.querySelectorAll('nav.md-nav--primary a.md-nav__link').length,
  title: document.title,
  heading: (document.querySelector('article h1') || {}).textContent || ''
})"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("site") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor, on every build
    done = subprocess.run([MKDOCS, "build", "--strict", "--site-dir", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    yield out


def test_the_site_builds_strict_with_every_page(site: Path) -> None:
    pages = sorted(p.relative_to(DOCS).with_suffix(".html").as_posix() for p in DOCS.rglob("*.md")
                   if "hooks" not in p.parts)
    missing = [p for p in [*pages, *(g.replace(".md", ".html") for g in GENERATED)] if not (site / p).is_file()]
    assert not missing, f"pages not built: {missing}"
    assert not (site / "hooks").exists(), "the build hook is not published"


def test_no_generated_page_is_committed() -> None:
    committed = [g for g in GENERATED if (DOCS / g).exists()]
    assert not committed, f"generated at build time by docs/hooks/reference.py, never kept in docs/: {committed}"


def test_the_generated_reference_covers_the_code(site: Path) -> None:
    import click

    import chaosmesh_qa
    from chaosmesh_qa.cli import cli

    activities = (site / "reference" / "activities.html").read_text(encoding="utf-8")
    discovered = chaosmesh_qa.discover()["activities"]
    missing = [a["name"] for a in discovered if f"<code>{a['name']}</code>" not in activities]
    assert not missing, f"activities missing from the reference: {missing}"
    assert "traces_complete" in activities, "probe functions discovery leaves out are documented too"
    commands = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    names = cli.list_commands(click.Context(cli))
    missing = [n for n in names if f"chaosmesh-qa {n}</code>" not in commands]
    assert not missing, f"commands missing from the CLI reference: {missing}"
    configuration = (site / "reference" / "configuration.html").read_text(encoding="utf-8")
    assert "chaosmesh_qa_target" in configuration and "CHAOSMESH_QA_STATE_DIR" in configuration


@pytest.mark.parametrize("page", ["index.html", "tutorials/first-experiment.html"])
def test_pages_open_in_chromium_with_the_navigation(site: Path, page: str, tmp_path: Path) -> None:
    visited = visit((site / page).as_uri(), NAVIGATION)
    shot = tmp_path / page.replace("/", "-").replace(".html", ".png")
    shot.write_bytes(visited.screenshot)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(shot, SHOTS / shot.name)
    assert not visited.errors, f"{page}: {visited.errors}"
    outside = [r for r in visited.requests if not r.startswith(("file://", "data:", "blob:"))]
    assert not outside, f"{page} asked for something outside the site: {outside}"
    navigation = json.loads(visited.evaluated)
    sections = {"Home", "Tutorials", "How-to", "Reference", "Explanation", "Figures", "Your first experiment"}
    assert sections <= set(navigation["entries"]), navigation
    assert navigation["links"] >= 30, navigation
    assert visited.screenshot.startswith(b"\x89PNG") and len(visited.screenshot) > 20_000
