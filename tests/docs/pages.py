"""The documentation's code blocks, read from the Markdown itself, and what each one must be.

``blocks(page)`` extracts every fenced block (language, ``title="..."`` attribute, text); ``commands(text)`` turns a
shell block into simple commands (``$(...)`` substitutions, pipes, ``&&``/``||``/``;``, line continuations and
comments handled, ``VAR=value`` prefixes kept apart); ``workspace`` lays out a directory where a page's commands
run as a reader would run them: the repository's ``experiments/``, ``examples/``, ``mesh`` and ``deploy/``, plus
every block with a ``title`` written to that path.  ``parse_chaosmesh_qa`` / ``parse_chaos`` parse a command line
against the real click command trees (``make_context`` with resilient parsing off: the command, every option and
the arguments must parse).  Used by tests/docs/test_tutorials.py and tests/docs/test_site.py.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shlex
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from tests.support.cli import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
ALL_PAGES = sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)
SHELL = ("sh", "bash", "shell", "console")
# Commands a tutorial may show that this project does not own: installing, inspecting, moving files, a cluster's
# own tools.  Anything else in a tutorial must be one of the commands the tests check (chaosmesh-qa, chaos, make,
# kubectl, export).
EXTERNAL = frozenset({"python3", "python", "pip", ".venv/bin/pip", "sudo", "apt-get", "jq", "curl", "cat", "gh",
                      "cd", "mkdir", "cp", "true", "git", "locust", "open", "xdg-open"})
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>.*)$")
_TITLE = re.compile(r'title="([^"]*)"')
# what a page's commands read from the repository: linked, or copied where a page may write into it
LINKED = ("mesh", "deploy", "Makefile", "pyproject.toml", "probes", "chaosmesh_qa")  # the twin meshes link into it
COPIED = ("experiments", "examples")  # a page may write a file into them (experiments/gamedays/my-day.yaml)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    title: str | None
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced code block of ``page``, its indentation (a block inside a list item) removed."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, fence, info = opened["indent"], opened["fence"], opened["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        title = _TITLE.search(info)
        found.append(Block(page, i + 1, info.split()[0] if info else "", title[1] if title else None,
                           "\n".join(body) + "\n"))
        i = j + 1
    return found


@dataclass
class Command:
    words: list[str]
    env: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def name(self) -> str:
        return self.words[0] if self.words else ""


def commands(text: str) -> list[Command]:
    """The simple commands of a shell block, ``$(...)`` substitutions included (each replaced by ``SUBST``)."""
    found: list[Command] = []
    for line in _logical_lines(text):
        found.extend(_simple_commands(line))
    return found


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = pending + raw, ""
        if line.strip():
            yield line


def _simple_commands(line: str) -> list[Command]:
    inner: list[Command] = []
    while (start := line.find("$(")) >= 0:  # innermost-first is not needed: the docs nest none
        depth, end = 0, start + 1
        for end in range(start + 1, len(line)):
            depth += {"(": 1, ")": -1}.get(line[end], 0)
            if depth == 0:
                break
        inner.extend(_simple_commands(line[start + 2:end]))
        line = line[:start] + "SUBST" + line[end + 1:]
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    found: list[Command] = []
    words: list[str] = []
    redirect = False
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            found.append(_command(words, line))
            words = []
        elif token in (">", ">>", "<", "2>", "2>>"):
            redirect = True
        elif redirect:
            redirect = False  # the redirection's target is no argument
        else:
            words.append(token)
    found.append(_command(words, line))
    return [c for c in found if c.words] + inner


def _command(words: list[str], source: str) -> Command:
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words[0].split("=", 1)
        env[name] = value
        words = words[1:]
    return Command(list(words), env, source.strip())


def program(name: str) -> str:
    """``.venv/bin/chaos`` -> ``chaos``; a path to one of the project's commands counts as the command."""
    base = name.rsplit("/", 1)[-1]
    return base if base in ("chaos", "chaosmesh-qa") else name


def expand(words: list[str], cwd: Path) -> list[str]:
    """Globs expanded as the shell would, relative to ``cwd`` (no match: the word stays)."""
    out: list[str] = []
    for word in words:
        if any(c in word for c in "*?[") and not word.startswith("-"):
            matches = sorted(glob.glob(word, root_dir=cwd))
            out.extend(matches or [word])
        else:
            out.append(word)
    return out


def parse_click(group: click.Group, info_name: str, args: list[str]) -> list[str]:
    """Parse ``args`` against ``group`` as the shell would hand them over; returns the command path.

    Raises ``click.UsageError`` (unknown command or option, a bad value, a missing argument).  ``--help`` and
    ``--version`` end parsing early, as they do for a person.
    """
    path = [info_name]
    try:
        ctx = group.make_context(info_name, list(args), resilient_parsing=False)
        command: click.Command = group
        while isinstance(command, click.Group):
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                break
            name, sub, remaining = command.resolve_command(ctx, rest)
            if sub is None or name is None:
                raise click.UsageError(f"no command {rest[0]!r}", ctx)
            path.append(name)
            ctx = sub.make_context(name, remaining, parent=ctx, resilient_parsing=False)
            command = sub
    except click.exceptions.Exit as done:  # --help, --version
        if done.exit_code != 0:
            raise
    return path


def parse_chaosmesh_qa(args: list[str]) -> list[str]:
    from chaosmesh_qa.cli import cli

    return parse_click(cli, "chaosmesh-qa", args)


def parse_chaos(args: list[str]) -> tuple[list[str], str | None]:
    """The ``chaos`` command path, and the experiment file of ``run``/``validate`` (None for other commands)."""
    from chaostoolkit.cli import cli

    path = parse_click(cli, "chaos", args)
    source = None
    if path[-1] in ("run", "validate"):
        ctx = cli.make_context("chaos", list(args), resilient_parsing=False)
        sub = cli.get_command(ctx, path[-1])
        assert sub is not None
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args][1:]
        source = sub.make_context(path[-1], rest, parent=ctx, resilient_parsing=False).params.get("source")
    return path, source


def workspace(root: Path, pages: list[Path]) -> Path:
    """A directory laid out like the repository's root for ``pages``' commands, with their titled files in it."""
    root.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copytree(ROOT / name, root / name, symlinks=True)
    for name in LINKED:
        if (ROOT / name).exists():
            (root / name).symlink_to(ROOT / name)
    for page in pages:
        for block in blocks(page):
            if block.title:
                target = root / block.title
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text, encoding="utf-8")
        for block in blocks(page):
            if block.lang in SHELL:
                for command in commands(block.text):
                    if program(command.name) == "chaosmesh-qa" and command.words[1:2] == ["new"]:
                        scaffold(command.words[1:], root)
    return root


def scaffold(args: list[str], cwd: Path) -> None:
    """Run a page's ``chaosmesh-qa new ...`` in ``cwd``, in this process (it writes files and starts nothing), so
    that the experiment or mesh directory it writes is there for the page's next commands, as for a reader."""
    from chaosmesh_qa.cli import cli

    before = Path.cwd()
    try:
        os.chdir(cwd)
        cli.main(args=args, prog_name="chaosmesh-qa", standalone_mode=False)
    finally:
        os.chdir(before)


def is_experiment(value: Any) -> bool:
    return isinstance(value, Mapping) and ("method" in value or "steady-state-hypothesis" in value)


def activities(value: Any) -> Iterator[dict[str, Any]]:
    """Every Python activity (a mapping with a ``provider`` of type python) inside a JSON value."""
    if isinstance(value, Mapping):
        provider = value.get("provider")
        if isinstance(provider, Mapping) and provider.get("type") == "python" and "func" in provider:
            yield dict(value)
        for item in value.values():
            yield from activities(item)
    elif isinstance(value, list):
        for item in value:
            yield from activities(item)


def json_value(block: Block) -> Any:
    try:
        return json.loads(block.text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{block.where}: the JSON block does not parse: {exc}") from None


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m[1] for m in re.finditer(r"(?m)^([A-Za-z][\w-]*)\s*:(?!=)", text)}


def configuration_names() -> set[str]:
    """Every configuration key and environment variable the configuration reference describes (the hook's table)."""
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name for key, env, _, _ in module.CONFIGURATION for name in (key, env) if name}
