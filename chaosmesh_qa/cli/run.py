"""``chaosmesh-qa run EXPERIMENT...``: run experiments through the ``chaos`` CLI, judge them, write reports.

The options, the progress and the summary printed; the running is ``report.run`` (its docstring says
how), the figures and gates ``report.baseline``, the HTML report's coverage section ``report.coverage``.
Exit code: 0 only when every experiment passed (and the regression gate, with ``--gate``), 1 otherwise, 2 bad
input.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from chaosmesh_qa.cli.terminal import live_console
from chaosmesh_qa.report.model import ExperimentReport
from chaosmesh_qa.report.progress import LiveView, PlainView, RunState, View
from chaosmesh_qa.report.run import Prepared, Stopper, chaos_executable, import_writers, prepare_all, run_one

if TYPE_CHECKING:  # imported when --baseline asks for it: its statistics (numpy) are a tenth of a second to load
    from chaosmesh_qa.report import baseline as baselines


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
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Run each experiment N times (its figures are recorded or compared over all N).")
@click.option("--baseline", "baseline_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Record each experiment's figures in DIR/<experiment>.json (with --gate: compare with them).")
@click.option("--gate", is_flag=True,
              help="With --baseline: compare with the recorded figures; a significant regression fails the run.")
@click.option("--thresholds", type=click.Path(dir_okay=False, path_type=Path),
              help="With --gate: a YAML/JSON file of allowances per figure and the confidence.")
def run(experiments: tuple[Path, ...], out_dir: Path, target: str | None, junit: Path | None, html: Path | None,
        markdown: Path | None, timeout: float, repeat: int, baseline_dir: Path | None, gate: bool,
        thresholds: Path | None) -> None:
    """Run experiments with `chaos`, judge each, write reports; exit 0 only when every experiment passed."""
    if gate and baseline_dir is None:
        raise click.BadParameter("needs --baseline DIR", param_hint="'--gate'")
    if thresholds is not None and not gate:
        raise click.BadParameter("needs --gate", param_hint="'--thresholds'")
    allowances = None
    if gate:
        from chaosmesh_qa.report import baseline as baselines

        allowances = baselines.load_thresholds(thresholds)
    prepared = prepare_all(list(experiments), target)
    chaos = chaos_executable()
    out_dir.mkdir(parents=True, exist_ok=True)
    # what the reports need that no result changes (matplotlib and Jinja2 imported, the coverage section: 1.1 s
    # of CPU in all) is done while the first experiment runs, not after it
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports-ahead")
    writers = ahead.submit(import_writers) if junit or html or markdown else None
    coverage_ahead = ahead.submit(_coverage, prepared, target) if html is not None else None
    ahead.shutdown(wait=False)
    view: View = LiveView(live_console()) if sys.stdout.isatty() else PlainView()
    stopper = Stopper()
    reports: list[ExperimentReport] = []
    by_experiment: dict[str, list[ExperimentReport]] = {}
    total = len(prepared) * repeat
    try:
        for index, (item, attempt) in enumerate(((i, r) for i in prepared for r in range(1, repeat + 1)), 1):
            name = item.name if repeat == 1 else f"{item.name}#{attempt}"
            directory = out_dir / item.name if repeat == 1 else out_dir / item.name / f"run-{attempt}"
            if stopper.signal_name:
                report = ExperimentReport(name, directory, None, f"not run: chaosmesh-qa run stopped by "
                                          f"{stopper.signal_name}", item.notes, skipped=True)
            else:
                for note in item.notes if attempt == 1 else []:
                    view.line(f"{item.name}: {note}")
                report = run_one(item, directory, chaos, view, RunState(name, index, total), timeout, stopper)
                report.name = name
                view.line(f"[{index}/{total}] {name}: {report.outcome.upper()}"
                          + (f" — {'; '.join(report.reasons)}" if report.reasons else ""))
            reports.append(report)
            by_experiment.setdefault(item.name, []).append(report)
    finally:
        view.close()
        stopper.restore()
    for report in reports:
        for line in report.summary_lines():
            click.echo(line)
    gates = _baselines(prepared, by_experiment, baseline_dir, allowances, target)
    coverage, notes = coverage_ahead.result() if coverage_ahead is not None else ([], [])
    for note in notes:
        click.echo(f"coverage: {note}")
    if writers is not None:  # no report asked for: matplotlib and Jinja2 are never imported
        write_html, write_junit, write_markdown = writers.result()
        for option, writer, path in (("junit", write_junit, junit), ("html", write_html, html),
                                     ("markdown", write_markdown, markdown)):
            if path is not None:
                writer(reports, path, gates=gates, **({"coverage": coverage} if option == "html" else {}))
                click.echo(f"{option} report: {path}")
    passed = sum(r.passed for r in reports)
    gates_passed = all(g.passed for g in gates)
    click.echo(f"{passed} of {len(reports)} experiment(s) passed"
               + (f"; regression gate {'passed' if gates_passed else 'FAILED'}" if gates else "")
               + f"; run directory {out_dir}")
    sys.exit(0 if passed == len(reports) and gates_passed else 1)


def _coverage(prepared: list[Prepared], target: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The HTML report's coverage section: the mesh's promises these experiments exercise (``report.coverage``),
    and the notes on what it could not cover."""
    from chaosmesh_qa.report.coverage import run_coverage
    from chaosmesh_qa.report.coverage_output import html_section

    found, notes = run_coverage([(item.source, item.experiment) for item in prepared], target)
    return [html_section(c) for c in found], notes


def _baselines(prepared: list[Prepared], runs: dict[str, list[ExperimentReport]], directory: Path | None,
               allowances: baselines.Thresholds | None, target: str | None) -> list[baselines.Gate]:
    """Record the figures (no ``--gate``) or compare them with the baseline; print what was done."""
    if directory is None:
        return []
    from chaosmesh_qa.report import baseline as baselines

    gates = []
    for item in prepared:
        context = baselines.run_context(item.experiment, target)
        if allowances is None:
            path = baselines.record(directory, item.name, runs[item.name], context)
            click.echo(f"baseline: {item.name}: " + (f"{len(runs[item.name])} run(s) recorded in {path}" if path
                                                     else "nothing recorded (no run measured traffic)"))
            continue
        result = baselines.gate(directory, item.name, runs[item.name], context, allowances)
        gates.append(result)
        if result.error:
            click.echo(f"regression gate: {item.name}: not compared — {result.error}")
            continue
        click.echo(f"regression gate: {item.name}: {'PASSED' if result.passed else 'FAILED'} "
                   f"({result.current_runs} run(s) against {result.baseline_runs} in {result.baseline_path})")
        for check in result.regressions:
            click.echo(f"  regression: {check.message()}")
        for change in result.context_changes():
            click.echo(f"  context changed since the baseline: {change}")
    return gates
