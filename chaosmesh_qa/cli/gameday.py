"""``chaosmesh-qa gameday SUITE.yaml``: an ordered suite of experiments run as one game day, with a stop button.

The options, the progress and what is printed; the suite, its stop conditions and the score are
``report.gameday`` (its docstring says how), the running ``report.run``.  Exit code: 0 passed, 1 an
experiment did not pass, 3 stopped by a stop condition, 2 bad input.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

from chaosmesh_qa.cli.terminal import live_console
from chaosmesh_qa.report.gameday import EXIT_STOPPED, FORMULA, StopWatch, day_summary, load_suite, now
from chaosmesh_qa.report.model import ExperimentReport
from chaosmesh_qa.report.progress import LiveView, PlainView, RunState, View
from chaosmesh_qa.report.run import Stopper, chaos_executable, import_writers, run_one


@click.command("gameday")
@click.argument("suite_path", metavar="SUITE.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("chaosmesh-qa-gameday"), show_default=True,
              help="Output directory: one sub-directory per entry, and the reports.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="JUnit XML [default: OUT/junit.xml].")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), help="HTML report [default: OUT/report.html].")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path),
              help="Markdown summary [default: OUT/summary.md].")
def gameday(suite_path: Path, out_dir: Path, junit: Path | None, html: Path | None, markdown: Path | None) -> None:
    """Run a game day: the suite's experiments in order, stop conditions, combined reports and a resilience score."""
    suite, plan = load_suite(suite_path)
    chaos = chaos_executable()
    out_dir.mkdir(parents=True, exist_ok=True)
    threading.Thread(target=import_writers, name="import-report-writers", daemon=True).start()
    started = now()
    view: View = LiveView(live_console()) if sys.stdout.isatty() else PlainView()
    stopper, watch = Stopper(), StopWatch(suite.stop)
    reports: list[ExperimentReport] = []
    try:
        for index, (item, _, _, timeout, conditions) in enumerate(plan, 1):
            why = (f"not run: the game day stopped: {watch.record['condition']}" if watch.record else
                   f"not run: the game day was stopped by {stopper.signal_name}" if stopper.signal_name else "")
            if why:
                reports.append(ExperimentReport(item.name, out_dir / item.name, None, why, item.notes, skipped=True))
                continue
            watch.start(item.experiment, conditions)
            own = " (this entry's own)" if conditions is not suite.stop else ""
            view.line(f"[{index}/{len(plan)}] {item.name}: stop conditions{own}: {conditions.describe()}")
            report = run_one(item, out_dir / item.name, chaos, view, RunState(item.name, index, len(plan)), timeout,
                             stopper, watch)
            reports.append(report)
            view.line(f"[{index}/{len(plan)}] {item.name}: {report.outcome.upper()}"
                      + (f" — {'; '.join(report.reasons)}" if report.reasons else ""))
            if watch.record:
                view.line(f"game day STOPPED: {watch.record['condition']}; healed "
                          f"{len(watch.record['healed'])} fault(s) in {watch.record['heal_s']:.2f} s")
                watch.heal_all()  # whatever the stopped run injected after the trip: none may outlive the day
    finally:
        view.close()
        stopper.restore()
    day = day_summary(suite, suite_path, plan, reports, watch, stopper, started)
    for line in [f"game day {suite.name}: {day.status.upper()} — {day.reason}",
                 f"resilience score {day.score:.1f} / 100 ({FORMULA})"]:
        click.echo(line)
    write_html, write_junit, write_markdown = import_writers()
    for option, writer, path in (("junit", write_junit, junit or out_dir / "junit.xml"),
                                 ("html", write_html, html or out_dir / "report.html"),
                                 ("markdown", write_markdown, markdown or out_dir / "summary.md")):
        writer(reports, path, day=day)
        click.echo(f"{option} report: {path}")
    sys.exit({"passed": 0, "stopped": EXIT_STOPPED}.get(day.status, 1))
