"""``chaosmesh-qa new`` in process: what it writes, and bad input (one line naming the option, exit 2, nothing
written).  The experiments it writes are run through the real ``chaos`` CLI in test_new_runs.py; the scaffolding
itself (defaults, budgets, the mesh directory) is tested in tests/scaffold.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.policy import FAULT_KINDS
from tests.support.inprocess import assert_one_line_error, run_main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = json.loads((ROOT / "experiments" / "pod-kill-failover.json").read_text())
BOOKINFO = ROOT / "examples" / "bookinfo" / "mesh"


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_alone_writes_a_complete_experiment(tmp_path: Path, kind: str) -> None:
    result = run_main("new", "--fault", kind, "-o", "x.json", cwd=tmp_path)
    assert result.code == 0, result
    assert result.stdout.startswith(f"wrote x.json: {kind} on ") and "chaos run x.json" in result.stdout
    assert result.stderr.startswith("note: --service: ")  # the default it chose, said once
    experiment = json.loads((tmp_path / "x.json").read_text())
    assert experiment["controls"] == SHIPPED["controls"]  # sandbox, traffic, safety
    assert experiment["runtime"] == SHIPPED["runtime"] and experiment["rollbacks"] == SHIPPED["rollbacks"]
    assert experiment["configuration"].keys() == SHIPPED["configuration"].keys()
    assert experiment["configuration"]["chaosmesh_qa_mesh"]["default"] == ""  # the built-in mesh
    probes = experiment["steady-state-hypothesis"]["probes"]
    recovery = probes[0]["provider"]
    assert recovery["func"] == "recovered_within" and probes[0]["tolerance"]["range"][1] == \
        recovery["arguments"]["budget_s"]
    assert "Budget: " in experiment["description"] and f"{recovery['arguments']['budget_s']} s" in \
        experiment["description"].split("Budget: ", 1)[1]
    faults = [a for a in experiment["method"] if a["provider"]["func"] != "heal"]
    assert len(faults) == 1 and faults[0]["provider"]["module"] == "chaosmesh_qa.actions"


def test_without_output_the_experiment_goes_to_stdout(tmp_path: Path) -> None:
    result = run_main("new", "--fault", "latency", "--service", "inventory", "--source", "catalog", cwd=tmp_path)
    assert result.code == 0 and result.stderr == "", result  # chosen by the user: no note
    experiment = json.loads(result.stdout)
    assert experiment["method"][0]["provider"]["arguments"]["source"] == "catalog"
    assert list(tmp_path.iterdir()) == []


def test_a_team_mesh_is_named_in_the_experiment(tmp_path: Path) -> None:
    result = run_main("new", "--fault", "abort", "--mesh", str(BOOKINFO), "--service", "ratings", "-o", "a.json",
                      cwd=tmp_path)
    assert result.code == 0, result
    experiment = json.loads((tmp_path / "a.json").read_text())
    assert experiment["configuration"]["chaosmesh_qa_mesh"]["default"] == str(BOOKINFO)
    assert experiment["configuration"]["chaosmesh_qa_traffic"]["paths"] == [{"path": "/productpage"}]
    assert "mesh 'bookinfo'" in experiment["description"]


def test_a_relative_mesh_directory_is_written_as_given_and_said_so(tmp_path: Path) -> None:
    shutil.copytree(BOOKINFO, tmp_path / "mesh")
    result = run_main("new", "--fault", "pod-kill", "--mesh", "mesh", "-o", "k.json", cwd=tmp_path)
    assert result.code == 0, result
    assert "names its mesh as mesh: run chaos from this directory" in result.stdout
    assert json.loads((tmp_path / "k.json").read_text())["configuration"]["chaosmesh_qa_mesh"]["default"] == "mesh"


def test_force_replaces_an_existing_file_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("mine")
    result = run_main("new", "--fault", "pod-kill", "-o", "x.json", cwd=tmp_path)
    assert_one_line_error(result, "-o: x.json exists", "--force")
    assert (tmp_path / "x.json").read_text() == "mine"
    assert run_main("new", "--fault", "pod-kill", "-o", "x.json", "--force", cwd=tmp_path).code == 0
    assert json.loads((tmp_path / "x.json").read_text())["tags"][1] == "pod-kill"


@pytest.mark.parametrize(("args", "fragments"), [
    pytest.param(["--fault", "meteor"], ["'--fault'", "'meteor' is not one of"], id="unknown-fault-kind"),
    pytest.param(["--fault", "pod-kill", "--service", "payments"],
                 ["--service: unknown service 'payments' in mesh 'shop'", "catalog, frontend"], id="unknown-service"),
    pytest.param(["--fault", "latency", "--service", "inventory", "--source", "payments"],
                 ["--source: unknown service 'payments'"], id="unknown-source"),
    pytest.param(["--fault", "latency", "--service", "inventory", "--source", "reviews"],
                 ["--source: 'reviews' does not call 'inventory'", "callers of inventory: catalog"], id="no-such-edge"),
    pytest.param(["--fault", "partition", "--service", "frontend", "--source", "catalog"],
                 ["--source: 'catalog' does not call 'frontend'"], id="partition-no-such-edge"),
    pytest.param(["--fault", "abort", "--service", "catalog", "--source", "catalog"],
                 ["--source: 'catalog' is also --service"], id="self-edge"),
    pytest.param(["--fault", "pod-kill", "--source", "frontend"], ["--source: only latency, abort and partition"],
                 id="pod-fault-with-source"),
    pytest.param(["--fault", "pod-kill", "--service", "Catalog!"], ["--service: expected a name"], id="bad-name"),
    pytest.param(["--fault", "pod-kill", "--mesh", "no-such-mesh"],
                 ["--mesh: no-such-mesh: mesh directory does not exist"], id="missing-mesh-dir"),
    pytest.param(["--fault", "pod-kill", "-o", "no-such-dir/x.json"], ["-o: no-such-dir: no such directory"],
                 id="output-directory-missing"),
    pytest.param(["--fault", "pod-kill", "--ingress", "frontend"], ["'--ingress'", "only with --from"],
                 id="mesh-option-with-fault"),
    pytest.param(["--from", "manifests", "--service", "catalog", "-o", "out"], ["'--service'", "only with --fault"],
                 id="experiment-option-with-from"),
    pytest.param(["--fault", "pod-kill", "--from", "manifests"], ["--fault KIND", "--from DIR", "not both"],
                 id="both-modes"),
    pytest.param([], ["give --fault KIND (an experiment) or --from DIR"], id="no-mode"),
])
def test_bad_input_is_one_line_naming_the_option_and_writes_nothing(tmp_path: Path, args: list[str],
                                                                     fragments: list[str]) -> None:
    (tmp_path / "manifests").mkdir()
    result = run_main("new", *args, "-o", "x.json", cwd=tmp_path) if "-o" not in args else \
        run_main("new", *args, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifests"]


def test_a_mesh_directory_from_manifests_and_istio_yaml(tmp_path: Path) -> None:
    source = tmp_path / "k8s"
    shutil.copytree(BOOKINFO, source, ignore=shutil.ignore_patterns("overlay.yaml"))  # no Mesh document
    result = run_main("new", "--from", "k8s", "-o", "mesh", cwd=tmp_path)
    assert result.code == 0, result
    assert result.stdout.splitlines()[0] == ("wrote mesh directory mesh: 4 services (productpage, details, reviews, "
                                             "ratings), ingress driven by a Gateway, 5 file(s) copied")
    assert "fill in `calls` in mesh/mesh.yaml" in result.stdout
    loaded = load_mesh(tmp_path / "mesh")  # the tool accepts it
    assert sorted(loaded.model.services) == ["details", "productpage", "ratings", "reviews"]
    assert (tmp_path / "mesh" / "platform" / "bookinfo.yaml").read_text() == \
        (source / "platform" / "bookinfo.yaml").read_text()
    again = run_main("new", "--from", "k8s", "-o", "mesh", cwd=tmp_path)
    assert_one_line_error(again, "-o: mesh exists and is not an empty directory")


@pytest.mark.parametrize(("setup", "args", "fragments"), [
    pytest.param(None, ["--from", "nope"], ["--from: nope: no such directory"], id="missing-dir"),
    pytest.param("mesh-dir", ["--from", "k8s"], ["--from: ", "already holds a Mesh document"], id="already-a-mesh"),
    pytest.param("empty", ["--from", "k8s"], ["--from: k8s: no *.yaml or *.yml files"], id="no-yaml"),
    pytest.param("manifests", ["--from", "k8s", "--ingress", "payments"], ["--ingress: unknown service 'payments'"],
                 id="unknown-ingress"),
    pytest.param("manifests", ["--from", "k8s"], ["'--from'", "needs -o OUT"], id="no-output"),
])
def test_bad_mesh_input_writes_nothing(tmp_path: Path, setup: str | None, args: list[str],
                                       fragments: list[str]) -> None:
    source = tmp_path / "k8s"
    if setup == "mesh-dir":
        shutil.copytree(BOOKINFO, source)
    elif setup == "empty":
        source.mkdir()
    elif setup == "manifests":
        shutil.copytree(BOOKINFO / "platform", source)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = [] if setup == "manifests" and "--ingress" not in args else ["-o", "out"]
    assert_one_line_error(run_main("new", *args, *out, cwd=tmp_path), *fragments)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
