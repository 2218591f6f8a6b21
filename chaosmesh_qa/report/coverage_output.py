"""``chaosmesh-qa coverage``'s outputs: a text table, Markdown, and JUnit XML with one testcase per promise.

Called by ``chaosmesh_qa.cli.coverage`` with a ``report.coverage.Coverage`` (and by ``cli.run`` for the HTML
report's section: ``html_section``).  In JUnit, a covered promise is a
passing testcase, an uncovered one a ``<failure type="uncovered">`` and one that cannot work a
``<failure type="unworkable">`` naming explain's codes (the common JUnit elements ``report.junit`` writes too).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from chaosmesh_qa.report.coverage import Coverage, Entry

STATUS_WIDTH, KIND_WIDTH = 10, 17


def headline(result: Coverage) -> str:
    return (f"mesh {result.mesh!r}: {result.covered} of {len(result.entries)} promises covered "
            f"({result.percent:.1f} %) by {len(result.experiments)} experiment"
            f"{'' if len(result.experiments) == 1 else 's'}")


def exercised(entry: Entry) -> str:
    """``experiment (fault -> probe)`` for each way it is exercised, experiments by file stem."""
    return "; ".join(f"{Path(x.experiment).stem} ({x.fault + ' -> ' if x.fault else ''}{x.probe})"
                     for x in entry.exercised_by)


def why_not(entry: Entry) -> str:
    if entry.unworkable:
        return "; ".join(f"{u['code']} {u['message']}" for u in entry.unworkable)
    p = entry.promise
    return f"needs {p.probe} with traffic through it" if p.fault.startswith("none") else \
        f"needs {p.fault}, and {p.probe}"


def table(result: Coverage) -> str:
    lines = [headline(result), "", f"{'STATUS':<{STATUS_WIDTH}}  {'KIND':<{KIND_WIDTH}}  PROMISE"]
    for entry in result.entries:
        p = entry.promise
        lines.append(f"{entry.status:<{STATUS_WIDTH}}  {p.kind:<{KIND_WIDTH}}  {p.summary}")
        pad = " " * (STATUS_WIDTH + KIND_WIDTH + 4)
        lines.append(f"{pad}at {p.source}")
        lines.append(f"{pad}{'by ' + exercised(entry) if entry.status == 'covered' else why_not(entry)}")
    for f in result.unattached:
        lines.append(f"explain: {f['code']} {f['message']} (at {f['location']}): a setting that cannot work, on no "
                     "promise")
    return "\n".join(lines)


def rows(result: Coverage) -> list[dict[str, str]]:
    """One row per promise: status, kind, promise, where it is declared, what exercises it (or what would)."""
    return [{"status": e.status, "kind": e.promise.kind, "promise": e.promise.summary, "source": str(e.promise.source),
             "detail": exercised(e) if e.status == "covered" else why_not(e)} for e in result.entries]


def html_section(result: Coverage) -> dict[str, Any]:
    """What ``report.html`` shows of one mesh's coverage (``run --html``)."""
    return {"mesh": result.mesh, "directory": result.directory, "covered": result.covered,
            "promises": len(result.entries), "percent": f"{result.percent:.1f}", "rows": rows(result)}


def markdown(result: Coverage) -> str:
    lines = [f"## Resilience coverage of mesh `{result.mesh}`", "", f"**{result.percent:.1f} %**: "
             f"{result.covered} of {len(result.entries)} promises covered by "
             + (", ".join(f"`{Path(e).name}`" for e in result.experiments) or "no experiment"), "",
             "| Status | Kind | Promise | Declared at | Exercised by / why not |", "|---|---|---|---|---|"]
    for row in rows(result):
        cells = [row["status"], row["kind"], row["promise"], f"`{row['source']}`", row["detail"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def junit_tree(result: Coverage) -> ET.Element:
    failures = sum(1 for e in result.entries if e.status != "covered")
    root = ET.Element("testsuites", name="chaosmesh-qa coverage", tests=str(len(result.entries)),
                      failures=str(failures), errors="0")
    suite = ET.SubElement(root, "testsuite", name=f"coverage: {result.mesh}", tests=str(len(result.entries)),
                          failures=str(failures), errors="0", skipped="0", time="0")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("mesh", result.directory), ("percent", f"{result.percent:.1f}"),
                        *(("experiment", e) for e in result.experiments)):
        ET.SubElement(properties, "property", name=name, value=value)
    for entry in result.entries:
        p = entry.promise
        case = ET.SubElement(suite, "testcase", classname=f"coverage.{p.kind}", name=p.id, time="0")
        if entry.status == "uncovered":
            ET.SubElement(case, "failure", type="uncovered",
                          message=f"{p.summary}: no experiment exercises it").text = f"{why_not(entry)}\nat {p.source}"
        elif entry.status == "unworkable":
            ET.SubElement(case, "failure", type="unworkable",
                          message=f"{p.summary}: cannot work ({', '.join(u['code'] for u in entry.unworkable)})"
                          ).text = f"{why_not(entry)}\nat {p.source}"
        ET.SubElement(case, "system-out").text = f"{p.summary}\nat {p.source}\n" + (
            f"exercised by: {exercised(entry)}" if entry.exercised_by else "exercised by: nothing")
    return root


def write_junit(result: Coverage, path: Path) -> None:
    root = junit_tree(result)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
