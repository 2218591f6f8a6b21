"""The CLI's conventions, in process (no process starts: the unit lane runs these): ``--version`` from the package
metadata, ``NO_COLOR`` (no-color.org) on click's output and on the live progress view, click's shell completion,
and errors as one line on stderr with exit code 2.  The completion script run by a real bash: test_completion_bash.py.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest

from chaosmesh_qa.cli import cli
from chaosmesh_qa.cli.terminal import color_allowed, live_console
from chaosmesh_qa.report.progress import LiveView, RunState, render_state
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from chaosmesh_qa.targets.policy import FAULT_KINDS
from tests.support.inprocess import assert_one_line_error, run_main

SGR = re.compile(r"\x1b\[[0-9;]*m")  # an ANSI style (colour, bold, dim): what NO_COLOR turns off
ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    result = run_main("--version", cwd=tmp_path)
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == f"chaosmesh-qa {version('chaosmesh-qa')}\n"


def test_version_and_help_name_the_program_the_same_way_under_python_m(tmp_path: Path) -> None:
    """``main`` names the program: usage lines and the completion variable do not depend on how it was started."""
    result = run_main("--help", cwd=tmp_path)
    assert result.stdout.startswith("Usage: chaosmesh-qa [OPTIONS] COMMAND [ARGS]...")
    assert "--version" in result.stdout


@pytest.fixture
def styled_command() -> Iterator[None]:
    """A command that prints through click with a colour, as any command may (click's own warnings do)."""

    @click.command("styled-for-test")
    def styled() -> None:
        click.echo(click.style("red text", fg="red"))
        click.secho("bold text", bold=True, err=True)

    cli.add_command(styled)
    try:
        yield
    finally:
        cli.commands.pop("styled-for-test")


@pytest.mark.usefixtures("styled_command")
def test_no_color_strips_every_style_click_prints(tmp_path: Path) -> None:
    coloured = run_main("styled-for-test", cwd=tmp_path, color=True)
    assert SGR.search(coloured.stdout) and SGR.search(coloured.stderr), "the check sees styles when they are there"
    for value in ("1", "true", "0", "no"):  # any non-empty value, whatever it says
        plain = run_main("styled-for-test", cwd=tmp_path, env={"NO_COLOR": value}, color=True)
        assert (plain.code, plain.stdout, plain.stderr) == (0, "red text\n", "bold text\n")
    empty = run_main("styled-for-test", cwd=tmp_path, env={"NO_COLOR": ""}, color=True)
    assert SGR.search(empty.stdout), "an empty NO_COLOR is no NO_COLOR (no-color.org)"


def test_color_allowed_follows_no_color_org() -> None:
    assert color_allowed({}) and color_allowed({"NO_COLOR": ""})
    assert not color_allowed({"NO_COLOR": "1"}) and not color_allowed({"NO_COLOR": "false"})


def _live_output(monkeypatch: pytest.MonkeyPatch, no_color: str | None) -> str:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    out = io.StringIO()
    console = live_console(file=out, force_terminal=True, width=100)
    console.print(render_state(RunState("pod-kill-failover", 1, 2), now=0.0))
    view = LiveView(console)  # what `run` and `gameday` draw on a terminal
    view.line("[1/2] pod-kill-failover: PASSED")
    view.close()
    return out.getvalue()


def test_no_color_turns_the_live_view_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SGR.search(_live_output(monkeypatch, None)), "the live view styles its text on a terminal"
    assert SGR.search(_live_output(monkeypatch, "")), "an empty NO_COLOR is no NO_COLOR"
    plain = _live_output(monkeypatch, "1")
    assert not SGR.search(plain), repr(plain)
    assert "pod-kill-failover" in plain and "PASSED" in plain


def test_run_and_gameday_draw_on_the_no_color_aware_console() -> None:
    for module in ("run", "gameday"):
        source = (ROOT / "chaosmesh_qa" / "cli" / f"{module}.py").read_text()
        assert "LiveView(live_console())" in source and "LiveView()" not in source, module


def _complete(tmp_path: Path, words: str, shell: str = "bash") -> list[str]:
    """What click's completion answers for the command line ``words`` (the last word being completed)."""
    parts = words.split(" ")
    result = run_main(cwd=tmp_path, env={"_CHAOSMESH_QA_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
                                         "COMP_CWORD": str(len(parts) - 1)})
    assert (result.code, result.stderr) == (0, ""), result
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line.startswith("plain,")]


def test_completion_of_commands_and_options(tmp_path: Path) -> None:
    assert {"env", "new", "up", "status", "run", "explain"} <= set(_complete(tmp_path, "chaosmesh-qa "))
    assert _complete(tmp_path, "chaosmesh-qa ne") == ["new"]
    assert "--fault" in _complete(tmp_path, "chaosmesh-qa new --")
    assert "--version" in _complete(tmp_path, "chaosmesh-qa --")
    assert "--state-dir" in _complete(tmp_path, "chaosmesh-qa env --")


def test_completion_of_fault_kinds_and_the_mesh_services(tmp_path: Path) -> None:
    assert _complete(tmp_path, "chaosmesh-qa new --fault ") == list(FAULT_KINDS)
    assert _complete(tmp_path, "chaosmesh-qa new --fault p") == ["pod-kill", "pod-failure", "partition"]
    assert _complete(tmp_path, "chaosmesh-qa new --fault latency --service ") == [
        "catalog", "frontend", "inventory", "reviews"]
    assert _complete(tmp_path, "chaosmesh-qa new --fault latency --source c") == ["catalog"]
    bookinfo = ROOT / "examples" / "bookinfo" / "mesh"
    assert _complete(tmp_path, f"chaosmesh-qa new --mesh {bookinfo} --fault abort --service r") == [
        "ratings", "reviews"]
    assert _complete(tmp_path, "chaosmesh-qa new --mesh /no/such/mesh --service ") == []  # offers nothing, no error


# bash's script is checked by test_completion_bash.py: click asks bash for its version before writing it
@pytest.mark.parametrize(("shell", "defines"), [("zsh", "#compdef chaosmesh-qa"),
                                                ("fish", "complete --no-files --command chaosmesh-qa")])
def test_completion_scripts(tmp_path: Path, shell: str, defines: str) -> None:
    result = run_main(cwd=tmp_path, env={"_CHAOSMESH_QA_COMPLETE": f"{shell}_source"})
    assert (result.code, result.stderr) == (0, "")
    assert defines in result.stdout
    assert "_CHAOSMESH_QA_COMPLETE" in result.stdout


@pytest.mark.parametrize(("args", "fragments"), [
    pytest.param(["--bogus"], ["--bogus"], id="unknown-option"),
    pytest.param(["frobnicate"], ["frobnicate"], id="unknown-command"),
    pytest.param(["new", "--fault", "meteor"], ["'--fault'", "meteor"], id="unknown-fault-kind"),
    pytest.param(["env", "--state-dir", "a\0b"], ["'--state-dir'"], id="path-with-nul"),
    pytest.param(["validate", "--mesh", "no-such-mesh"], ["no-such-mesh", "does not exist"], id="missing-mesh"),
])
def test_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_main(*args, cwd=tmp_path), *fragments)


def test_default_mesh_is_where_the_package_says(tmp_path: Path) -> None:
    assert (default_mesh_dir() / "mesh.yaml").is_file()
