"""The tutorials (and the README) are runnable: every code block is read from the Markdown and checked.

* Every block of a tutorial is one of the kinds below, and each kind is checked: an experiment passes the real
  `chaos validate`; an activity snippet names a real function with real arguments; a game-day suite and a traffic
  profile load with the package's own loaders; a mesh file is validated by the page's own `chaosmesh-qa validate`
  command; a workflow's `run:` steps are commands; a `text` block is output.
* Every command line: `chaosmesh-qa ...` parses against the click command tree (the command, every option, the
  arguments), and the cheap ones that start nothing (validate, explain, `--help`) are run (`new`, which writes
  files, runs in this process when the workspace is laid out, so what it writes is there for the next commands);
  `chaos run FILE` / `chaos validate FILE` parse against Chaos Toolkit's own CLI and the file passes
  `chaos validate`; `make` targets exist; `kubectl -f` files exist and parse; `export` names are configuration
  keys of the reference; `eval` only of a `$(...)`, itself checked.
* The `chaosmesh-qa` lines and activity snippets of every other page are checked the same way (parse only).

Commands run in a workspace laid out like the repository's root, with every titled block (```json
title="first-experiment.json"```) written where the reader is told to save it (tests/docs/pages.py).
The README's first experiment runs end to end in tests/docs/test_readme_experiment.py (the slow suite).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from tests.docs.pages import (
    ALL_PAGES,
    EXTERNAL,
    README,
    SHELL,
    TUTORIALS,
    Block,
    Command,
    activities,
    blocks,
    commands,
    configuration_names,
    expand,
    is_experiment,
    json_value,
    makefile_targets,
    parse_chaos,
    parse_chaosmesh_qa,
    program,
    workspace,
)
from tests.support.cli import CHAOS, CLI, ROOT

RUNNABLE = [README, *TUTORIALS]
MESH_KINDS = {"Mesh", "VirtualService", "DestinationRule", "PeerAuthentication", "AuthorizationPolicy", "Sidecar",
              "Gateway", "HTTPRoute", "Deployment", "StatefulSet", "Service", "ServiceAccount", "Namespace"}
PROFILE_KEYS = {f.name for f in dataclasses.fields(importlib.import_module("chaosmesh_qa.traffic.profile").Profile)}
CHEAP = {"validate", "explain"}  # commands that start no sandbox and change nothing


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """Per runnable page, its own workspace (titled files of different pages never meet)."""
    root = tmp_path_factory.mktemp("docs-work")
    return {page: workspace(root / page.stem, [page]) for page in RUNNABLE}


def kind(block: Block) -> str | None:
    if block.lang in SHELL:
        return "commands"
    if block.lang == "text":
        return "output"
    if block.lang == "json":
        value = json_value(block)
        return "experiment" if is_experiment(value) else "activities" if list(activities(value)) else None
    if block.lang == "yaml":
        documents = [d for d in yaml.safe_load_all(block.text) if d is not None]
        if block.title and all(isinstance(d, dict) and d.get("kind") in MESH_KINDS for d in documents):
            return "mesh"
        if len(documents) == 1 and isinstance(documents[0], dict):
            document = documents[0]
            if "experiments" in document and "name" in document:
                return "suite"
            if "jobs" in document:
                return "workflow"
            if set(document) <= PROFILE_KEYS:
                return "profile"
    return None


def page_commands(page: Path) -> list[tuple[Block, Command]]:
    found = []
    for block in blocks(page):
        if kind(block) == "commands":
            found += [(block, c) for c in commands(block.text)]
        elif kind(block) == "workflow":
            steps = [s for job in yaml.safe_load(block.text)["jobs"].values() for s in job.get("steps", [])]
            found += [(block, c) for s in steps if "run" in s for c in commands(s["run"])]
    return found


@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_every_block_is_a_kind_the_tests_check(page: Path) -> None:
    found = blocks(page)
    assert found, f"{page_id(page)}: no code block"
    unknown = [f"{b.where} ({b.lang or 'no language'})" for b in found if kind(b) is None]
    assert not unknown, f"code blocks no test checks (give them a language and a known shape): {unknown}"
    validated = {Path(m).as_posix() for _, c in page_commands(page) if program(c.name) == "chaosmesh-qa"
                 and "validate" in c.words for m in _option(c.words, "--mesh")}
    meshes = {Path(b.title).parent.as_posix() for b in found if kind(b) == "mesh" and b.title}
    assert meshes <= validated, f"{page_id(page)}: mesh directories the page never validates: {meshes - validated}"


def _option(words: list[str], name: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == name] + [
        w.split("=", 1)[1] for w in words if w.startswith(name + "=")]


@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_every_command_line_exists_and_parses(page: Path, workspaces: dict[Path, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    work = workspaces[page]
    monkeypatch.chdir(work)
    for name in [n for n in os.environ if n.startswith("CHAOSMESH_QA_")]:
        monkeypatch.delenv(name)
    targets, config = makefile_targets(), configuration_names() | {"PATH"}
    problems = []
    for block, command in page_commands(page):
        try:
            problem = _check(command, work, targets, config, monkeypatch)
        except (click.UsageError, click.BadParameter) as exc:
            problem = exc.format_message()
        if problem:
            problems.append(f"{block.where}: `{command.source}`: {problem}")
    assert not problems, "\n".join(problems)


def _check(command: Command, work: Path, targets: set[str], config: set[str],
           monkeypatch: pytest.MonkeyPatch) -> str | None:
    name, args = program(command.name), expand(command.words[1:], work)
    with monkeypatch.context() as scoped:
        for key, value in command.env.items():
            scoped.setenv(key, value)
        if name == "chaosmesh-qa":
            parse_chaosmesh_qa(args)
        elif name == "chaos":
            path, source = parse_chaos(args)
            if source is not None and not (work / source).is_file():
                return f"{' '.join(path)}: no experiment file {source}"
        elif name == "make":
            missing = [a for a in args if "=" not in a and a not in targets]
            return f"no Makefile target {missing}" if missing else None
        elif name == "kubectl":
            for file in _option(args, "-f"):
                if not (work / file).is_file():
                    return f"no file {file}"
                list(yaml.safe_load_all((work / file).read_text(encoding="utf-8")))
        elif name == "eval":  # only of a substitution, whose own command is checked as one of the page's
            return None if args == ["SUBST"] else f"eval of anything but a $(...): {args}"
        elif name == "export":
            unknown = [a.split("=")[0] for a in args if a.split("=")[0] not in config]
            return f"not a configuration key of the reference: {unknown}" if unknown else None
        elif name not in EXTERNAL:
            return f"a command the docs tests do not know ({name}): check it here or leave it out"
    return None


@pytest.mark.processes
@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_cheap_commands_run(page: Path, workspaces: dict[Path, Path]) -> None:
    """validate, explain and --help start nothing and change nothing: run them, as written, from the workspace."""
    work = workspaces[page]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSMESH_QA_")}
    ran, failures = 0, []
    for block, command in page_commands(page):
        if program(command.name) != "chaosmesh-qa":
            continue
        args = expand(command.words[1:], work)
        if not ({"--help", "-h"} & set(args) or (args and args[0] in CHEAP)):
            continue
        done = subprocess.run([*CLI, *args], cwd=work, env={**env, **command.env}, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        ran += 1
        if done.returncode != 0:
            failures.append(f"{block.where}: `{command.source}` exited {done.returncode}: {done.stderr[-500:]}")
    assert not failures, "\n".join(failures)
    if any(program(c.name) == "chaosmesh-qa" and c.words[1:2] and c.words[1] in CHEAP for _, c in
           page_commands(page)):
        assert ran, "the page's cheap commands were run"


@pytest.mark.processes
@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_experiments_pass_chaos_validate(page: Path, workspaces: dict[Path, Path], tmp_path: Path) -> None:
    """Every experiment a page shows or runs passes the real `chaos validate`."""
    work = workspaces[page]
    files: dict[str, Path] = {}
    for i, block in enumerate(blocks(page)):
        if kind(block) == "experiment":
            path = work / block.title if block.title else tmp_path / f"block-{i}.json"
            if not block.title:
                path.write_text(block.text, encoding="utf-8")
            files[block.where] = path
    for block, command in page_commands(page):
        if program(command.name) == "chaos":
            _, source = parse_chaos(expand(command.words[1:], work))
            if source:
                files.setdefault(f"{block.where}: {source}", work / source)
    failures = []
    for where, path in {str(p.resolve()): (w, p) for w, p in files.items()}.values():
        done = subprocess.run([CHAOS, "--no-version-check", "--no-log-file", "validate", str(path)], cwd=work,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            failures.append(f"{where}: chaos validate {path.name}: {(done.stdout + done.stderr)[-800:]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_suites_and_profiles_load(page: Path, workspaces: dict[Path, Path]) -> None:
    from chaosmesh_qa.report.gameday import load_suite
    from chaosmesh_qa.traffic.profile import load_profile

    for block in blocks(page):
        if kind(block) == "suite":
            assert block.title, f"{block.where}: a suite the reader saves has a title (where to save it)"
            load_suite(workspaces[page] / block.title)
        elif kind(block) == "profile":
            load_profile(yaml.safe_load(block.text))


@pytest.mark.parametrize("page", ALL_PAGES, ids=page_id)
def test_activity_snippets_name_real_functions_and_arguments(page: Path) -> None:
    """Every Python activity of every JSON block: the module and function exist, and the arguments are its own."""
    problems = []
    for block in blocks(page):
        if block.lang != "json":
            continue
        for activity in activities(json_value(block)):
            problem = _activity_problem(activity["provider"])
            if problem:
                problems.append(f"{block.where}: {activity.get('name')}: {problem}")
    assert not problems, "\n".join(problems)


def _activity_problem(provider: dict[str, Any]) -> str | None:
    try:
        function = getattr(importlib.import_module(provider["module"]), provider["func"])
    except (ImportError, AttributeError) as exc:
        return str(exc)
    parameters = inspect.signature(function).parameters
    given = set(provider.get("arguments", {}))
    unknown = given - set(parameters)
    required = {n for n, p in parameters.items() if p.default is inspect.Parameter.empty and n != "configuration"}
    if unknown or "configuration" in given:
        return f"not arguments of {provider['func']}: {sorted(unknown | ({'configuration'} & given))}"
    return f"missing required arguments {sorted(required - given)}" if required - given else None


@pytest.mark.parametrize("page", [p for p in ALL_PAGES if p not in TUTORIALS], ids=page_id)
def test_command_lines_of_other_pages_parse(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How-to, reference and explanation pages: their `chaosmesh-qa` and `chaos` lines parse, from the repository's
    root, and the experiment files they run exist."""
    monkeypatch.chdir(ROOT)
    problems = []
    for block in blocks(page):
        if block.lang not in SHELL:
            continue
        for command in commands(block.text):
            args = expand(command.words[1:], ROOT)
            try:
                if program(command.name) == "chaosmesh-qa":
                    parse_chaosmesh_qa(args)
                elif program(command.name) == "chaos":
                    _, source = parse_chaos(args)
                    if source is not None and not (ROOT / source).is_file():
                        problems.append(f"{block.where}: `{command.source}`: no experiment file {source}")
            except (click.UsageError, click.BadParameter) as exc:
                problems.append(f"{block.where}: `{command.source}`: {exc.format_message()}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("readme", [README, *sorted((ROOT / "examples").glob("*/README.md"))], ids=page_id)
def test_relative_links_of_the_readmes_resolve(readme: Path) -> None:
    """The README and the examples' READMEs are read outside the site (mkdocs --strict checks the site's links)."""
    text = readme.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    broken = [link for link in links if "://" not in link and not (readme.parent / link).exists()]
    assert not broken, f"{page_id(readme)}: links to nothing: {broken}"


def test_the_readme_and_the_first_tutorial_show_the_same_experiment() -> None:
    def experiment(page: Path) -> Any:
        found = [json_value(b) for b in blocks(page) if b.title == "first-experiment.json"]
        assert len(found) == 1, f"{page_id(page)}: one first-experiment.json block"
        return found[0]

    assert experiment(README) == experiment(ROOT / "docs" / "tutorials" / "first-experiment.md")
