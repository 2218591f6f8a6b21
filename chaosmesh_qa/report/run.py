"""``chaosmesh-qa run EXPERIMENT...``: run experiments through the ``chaos`` CLI, judge them, write reports.

Registered on the CLI group in ``chaosmesh_qa/cli.py``.  Every experiment is loaded and validated
first (chaoslib's own validator); one bad file stops everything before anything starts (one line,
exit 2).  Each then runs as a child ``chaos run`` process — never in this process: the activities
and controls do their work there, and Locust stays out of both — on a copy written to its own
sub-directory of ``--out`` with safe defaults: ``runtime.rollbacks.strategy: always`` (and the CLI
flag) and the ``chaosmesh-qa-safety`` control added when missing, both said in the output.  The
sub-directory keeps the journal, ``chaostoolkit.log``, chaos's console output, its NDJSON events
and the client timeline.  Progress comes from ``report.progress``; verdicts from
``report.verdict``; ``--junit/--html/--markdown`` from the writers next to this module.  The exit
code is the verdict: 0 only when every experiment passed, 1 otherwise.  SIGINT/SIGTERM stop the
current experiment with SIGTERM (its rollbacks play), skip the rest and still write the reports.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click
import yaml

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.report.model import EVENTS, EXPERIMENT, JOURNAL, LOG, OUTPUT, TIMELINE, ExperimentReport
from chaosmesh_qa.report.progress import LiveView, Monitor, PlainView, RunState, View

SAFETY_MODULE = "chaosmesh_qa.controls.safety"
SAFETY_CONTROL = {"name": "chaosmesh-qa-safety", "provider": {"type": "python", "module": SAFETY_MODULE}}
STOP_GRACE_S = 60.0
POLL_S = 0.25


@dataclass
class Prepared:
    name: str
    source: Path
    experiment: dict[str, Any]
    notes: list[str]


@click.command("run")
@click.argument("experiments", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("chaosmesh-qa-run"),
              show_default=True, help="Output directory: one sub-directory per experiment.")
@click.option("--target", type=click.Choice(["local", "kubernetes"]), default=None, envvar="CHAOSMESH_QA_TARGET",
              help="Mesh target for every experiment [default: each experiment's configuration, else local].")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write a JUnit XML report here.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), help="Write a self-contained HTML report.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), help="Write a Markdown summary.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800.0, show_default=True,
              help="Seconds an experiment may run before it is stopped (SIGTERM: its rollbacks still play).")
def run(experiments: tuple[Path, ...], out_dir: Path, target: str | None, junit: Path | None, html: Path | None,
        markdown: Path | None, timeout: float) -> None:
    """Run experiments with `chaos`, judge each, write reports; exit 0 only when every experiment passed."""
    prepared = _prepare_all(list(experiments), target)
    chaos = _chaos_executable()
    out_dir.mkdir(parents=True, exist_ok=True)
    if junit or html or markdown:  # import matplotlib and Jinja2 while the first experiment runs, not after
        threading.Thread(target=_import_writers, name="import-report-writers", daemon=True).start()
    view: View = LiveView() if sys.stdout.isatty() else PlainView()
    stopper = _Stopper()
    reports: list[ExperimentReport] = []
    try:
        for index, item in enumerate(prepared, 1):
            if stopper.signal_name:
                reports.append(_skipped(item, out_dir, f"not run: chaosmesh-qa run stopped by {stopper.signal_name}"))
                continue
            for note in item.notes:
                view.line(f"{item.name}: {note}")
            report = _run_one(item, out_dir / item.name, chaos, view, RunState(item.name, index, len(prepared)),
                              timeout, stopper)
            reports.append(report)
            view.line(f"[{index}/{len(prepared)}] {item.name}: {report.outcome.upper()}"
                      + (f" — {'; '.join(report.reasons)}" if report.reasons else ""))
    finally:
        view.close()
        stopper.restore()
    for report in reports:
        for line in report.summary_lines():
            click.echo(line)
    write_html, write_junit, write_markdown = _import_writers()
    for option, writer, path in (("junit", write_junit, junit), ("html", write_html, html),
                                 ("markdown", write_markdown, markdown)):
        if path is not None:
            writer(reports, path)
            click.echo(f"{option} report: {path}")
    passed = sum(r.passed for r in reports)
    click.echo(f"{passed} of {len(reports)} experiment(s) passed; run directory {out_dir}")
    sys.exit(0 if passed == len(reports) else 1)


# --------------------------------------------------------------------------- preparing


def _prepare_all(paths: list[Path], target: str | None) -> list[Prepared]:
    prepared: list[Prepared] = []
    names: set[str] = set()
    for path in paths:
        experiment = load_experiment(path)
        name, counter = path.stem, 2
        while name in names:
            name, counter = f"{path.stem}-{counter}", counter + 1
        names.add(name)
        prepared.append(Prepared(name, path, *safe_copy(experiment, target)))
    return prepared


def load_experiment(path: Path) -> dict[str, Any]:
    """Read and validate an experiment (chaoslib's validator); any problem is one ``InvalidArgument`` line."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: cannot read the experiment ({_first_line(exc)})") from None
    try:
        experiment = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                              f"({_first_line(exc)})") from None
    if not isinstance(experiment, dict):
        raise InvalidArgument(f"{path}: not a Chaos Toolkit experiment (expected a mapping at the top level)")
    try:
        ensure_experiment_is_valid(copy.deepcopy(experiment))
    except ChaosException as exc:
        raise InvalidArgument(f"{path}: invalid experiment: {_first_line(exc)}") from None
    return experiment


def safe_copy(experiment: dict[str, Any], target: str | None) -> tuple[dict[str, Any], list[str]]:
    """The experiment with rollbacks always played and the safety control present; notes say what changed."""
    result, notes = copy.deepcopy(experiment), []
    rollbacks = result.setdefault("runtime", {}).setdefault("rollbacks", {})
    if rollbacks.get("strategy") != "always":
        notes.append(f"runtime.rollbacks.strategy set to 'always' (was {rollbacks.get('strategy', 'unset')!r})")
        rollbacks["strategy"] = "always"
    controls = result.setdefault("controls", [])
    if not any((c.get("provider") or {}).get("module") == SAFETY_MODULE for c in controls if isinstance(c, dict)):
        controls.append(copy.deepcopy(SAFETY_CONTROL))
        notes.append("added the chaosmesh-qa-safety control (heals the run's faults whatever happens); "
                     "the experiment did not declare it")
    if target is not None:
        result.setdefault("configuration", {})["chaosmesh_qa_target"] = target
    return result, notes


def _import_writers() -> tuple[Any, Any, Any]:
    from chaosmesh_qa.report.html import write_html  # matplotlib and Jinja2: only when a report is asked for
    from chaosmesh_qa.report.junit import write_junit
    from chaosmesh_qa.report.markdown import write_markdown

    return write_html, write_junit, write_markdown


def _chaos_executable() -> str:
    beside = Path(sys.executable).with_name("chaos")
    found = str(beside) if beside.exists() else shutil.which("chaos")
    if not found:
        raise InvalidArgument("the 'chaos' command (chaostoolkit) is not installed next to chaosmesh-qa nor on PATH")
    return found


# --------------------------------------------------------------------------- running


class _Stopper:
    """SIGINT/SIGTERM while running: remember it; the loop stops the current `chaos` and skips the rest."""

    def __init__(self) -> None:
        self.signal_name = ""
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _run_one(item: Prepared, directory: Path, chaos: str, view: View, state: RunState, timeout: float,
             stopper: _Stopper) -> ExperimentReport:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (JOURNAL, TIMELINE, LOG, EVENTS, OUTPUT):
        (directory / stale).unlink(missing_ok=True)
    experiment = copy.deepcopy(item.experiment)
    timeline = (directory / TIMELINE).absolute()
    experiment.setdefault("configuration", {})["chaosmesh_qa_timeline"] = str(timeline)
    (directory / EXPERIMENT).write_text(json.dumps(experiment, indent=2), encoding="utf-8")
    command = [chaos, "--no-version-check", "--log-file", str(directory / LOG), "run", "--rollback-strategy",
               "always", "--events-file", str(directory / EVENTS), "--journal-path", str(directory / JOURNAL),
               str(directory / EXPERIMENT)]
    env = {**os.environ, "CHAOSMESH_QA_TIMELINE": str(timeline)}
    monitor = Monitor(directory, state)
    started = time.monotonic()
    with (directory / OUTPUT).open("wb") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        stopping_since: float | None = None
        while True:
            try:
                returncode: int | None = process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                returncode = None
            view.update(monitor, monitor.poll())
            if returncode is not None:
                break
            overdue = time.monotonic() - started > timeout
            if (stopper.signal_name or overdue) and stopping_since is None:
                view.line(f"{item.name}: stopping chaos ({stopper.signal_name or f'timeout {timeout:g} s'}); "
                          "its rollbacks play")
                process.send_signal(signal.SIGTERM)
                stopping_since = time.monotonic()
            elif stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S:
                process.kill()  # the sandbox's fault leases still end every fault
    return ExperimentReport.from_directory(directory, item.name, item.notes, returncode, time.monotonic() - started)


def _skipped(item: Prepared, out_dir: Path, why: str) -> ExperimentReport:
    return ExperimentReport(item.name, out_dir / item.name, None, why, item.notes, skipped=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
