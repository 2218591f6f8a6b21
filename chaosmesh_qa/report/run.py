"""Running experiments through the ``chaos`` CLI for ``chaosmesh-qa run EXPERIMENT...`` (the command itself,
its options and output, is ``chaosmesh_qa.cli.run``) and ``chaosmesh-qa gameday``.

Every experiment is loaded and validated first (chaoslib's own validator); one bad file stops everything
before anything starts (one line, exit 2). Each then runs as a child ``chaos run`` process — never in
this process: the activities and controls do their work there, and Locust stays out of both — on a copy
written to its own sub-directory of ``--out`` with safe defaults: ``runtime.rollbacks.strategy: always``
(and the CLI flag) and the ``chaosmesh-qa-safety`` control added when missing, both said in the output.
The sub-directory keeps the journal, ``chaostoolkit.log``, chaos's console output, its NDJSON events and
the client timeline. Progress comes from ``report.progress``; verdicts from ``report.verdict``;
``--junit/--html/--markdown`` from the writers next to this module. The exit code is the verdict: 0 only
when every experiment passed, 1 otherwise. SIGINT/SIGTERM stop the current experiment with SIGTERM (its
rollbacks play), skip the rest and still write the reports. ``--repeat N`` runs each experiment N times
(``<out>/<name>/run-<i>``); ``--baseline DIR`` records their figures, ``--baseline DIR --gate`` compares
them with the recorded ones (``report.baseline``) and a significant regression fails the run too.
``chaosmesh-qa gameday`` (``report.gameday``) runs its experiments through ``run_one`` with a ``watch``
callback for its stop conditions.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from chaosmesh_qa import sessions
from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.report.model import EVENTS, EXPERIMENT, JOURNAL, LOG, OUTPUT, TIMELINE, ExperimentReport
from chaosmesh_qa.report.progress import Monitor, RunState, View

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


# --------------------------------------------------------------------------- preparing


def prepare_all(paths: list[Path], target: str | None) -> list[Prepared]:
    """Every experiment loaded and validated, each under a unique name, before any runs (one bad file: one line)."""
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
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # chaoslib's validator trips on odd shapes
        raise InvalidArgument(f"{path}: invalid experiment: {type(exc).__name__}: {_first_line(exc)}") from None
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


def import_writers() -> tuple[Any, Any, Any]:
    from chaosmesh_qa.report.html import write_html  # matplotlib and Jinja2: only when a report is asked for
    from chaosmesh_qa.report.junit import write_junit
    from chaosmesh_qa.report.markdown import write_markdown

    return write_html, write_junit, write_markdown


def chaos_executable() -> str:
    beside = Path(sys.executable).with_name("chaos")
    found = str(beside) if beside.exists() else shutil.which("chaos")
    if not found:
        raise InvalidArgument("the 'chaos' command (chaostoolkit) is not installed next to chaosmesh-qa nor on PATH")
    return found


# --------------------------------------------------------------------------- running


class Stopper:
    """SIGINT/SIGTERM while running: remember it; the loop stops the current `chaos` and skips the rest."""

    def __init__(self) -> None:
        self.signal_name = ""
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


Watch = Callable[[Monitor, list[dict[str, Any]]], str]


def run_one(item: Prepared, directory: Path, chaos: str, view: View, state: RunState, timeout: float,
            stopper: Stopper, watch: Watch | None = None) -> ExperimentReport:
    """Run one experiment in a child ``chaos``; ``watch(monitor, new events)`` returning a reason stops it."""
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
        process = sessions.spawn(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env)
        stopping_since: float | None = None
        while True:
            try:
                returncode: int | None = process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                returncode = None
            events = monitor.poll()
            view.update(monitor, events)
            if returncode is not None:
                break
            overdue = time.monotonic() - started > timeout
            watched = watch(monitor, events) if watch is not None and stopping_since is None else ""
            if (stopper.signal_name or overdue or watched) and stopping_since is None:
                why = stopper.signal_name or watched or f"timeout {timeout:g} s"
                view.line(f"{item.name}: stopping chaos ({why}); its rollbacks play")
                process.send_signal(signal.SIGTERM)
                stopping_since = time.monotonic()
            elif stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S:
                process.kill()  # the sandbox's fault leases still end every fault
    return ExperimentReport.from_directory(directory, item.name, item.notes, returncode, time.monotonic() - started)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
