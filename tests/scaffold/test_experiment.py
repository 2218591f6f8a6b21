"""``scaffold.new_experiment``: the defaults on the default mesh, budgets derived as the shipped experiments derive
theirs (same numbers where they test the same thing), and an experiment for every kind on every mesh the
repository ships.  In process, nothing starts; the runs through ``chaos`` are tests/cli/test_new_runs.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.scaffold import new_experiment, timing
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from chaosmesh_qa.targets.policy import FAULT_KINDS

ROOT = Path(__file__).resolve().parents[2]
MESHES = [default_mesh_dir(), ROOT / "examples" / "bookinfo" / "mesh", ROOT / "examples" / "own-service" / "mesh",
          *sorted((ROOT / "experiments" / "meshes").iterdir())]


@pytest.fixture(scope="module")
def shop() -> MeshModel:
    return load_mesh(default_mesh_dir()).model


def shipped(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "experiments" / f"{name}.json").read_text()))


def _probe(experiment: dict[str, Any], func: str) -> dict[str, Any]:
    return next(p for p in experiment["steady-state-hypothesis"]["probes"] if p["provider"]["func"] == func)


def _fault(experiment: dict[str, Any]) -> dict[str, Any]:
    return dict(next(a for a in experiment["method"] if a["provider"]["func"] != "heal")["provider"])


@pytest.mark.parametrize(("kind", "service", "source"), [
    ("pod-kill", "catalog", None), ("pod-failure", "catalog", None), ("app-kill", "catalog", None),
    ("partition", "catalog", "frontend"), ("latency", "inventory", "catalog"), ("abort", "catalog", "frontend")])
def test_defaults_on_the_default_mesh(shop: MeshModel, kind: str, service: str, source: str | None) -> None:
    made = new_experiment(shop, kind)
    assert (made.service, made.source) == (service, source)
    assert len(made.notes) == 1 and made.notes[0].startswith(f"--service: {service}")


def test_pod_kill_matches_the_shipped_pod_kill_failover(shop: MeshModel) -> None:
    ours, theirs = new_experiment(shop, "pod-kill").experiment, shipped("pod-kill-failover")
    assert _probe(ours, "recovered_within")["provider"]["arguments"] == \
        _probe(theirs, "recovered_within")["provider"]["arguments"]  # budget 1 s, errors 1 %, p99 300 ms
    assert _probe(ours, "policy_engaged")["provider"]["arguments"] == \
        _probe(theirs, "policy_engaged")["provider"]["arguments"]
    assert _fault(ours)["arguments"] == _fault(theirs)["arguments"]
    assert ours["configuration"] == theirs["configuration"]
    assert "the budget is 1 s" in ours["description"] and "outlier detection ejects it" in ours["description"]


def test_partition_matches_the_shipped_partition_failover(shop: MeshModel) -> None:
    ours, theirs = new_experiment(shop, "partition").experiment, shipped("partition-failover")
    assert _probe(ours, "recovered_within")["provider"]["arguments"] == \
        _probe(theirs, "recovered_within")["provider"]["arguments"]  # 3 s, p99 600 ms: per-try timeout + 100 ms
    assert _fault(ours)["arguments"] == _fault(theirs)["arguments"]
    assert "500 ms (its per-try timeout to catalog)" in ours["description"]


def test_latency_is_bounded_by_the_timeouts_in_front_of_it(shop: MeshModel) -> None:
    made = new_experiment(shop, "latency").experiment
    fault = _fault(made)["arguments"]
    assert fault == {"service": "inventory", "delay_ms": 2000, "duration_s": 30, "source": "catalog"}
    t = timing.latency(shop, "catalog", "inventory")
    assert (t.bound_s, t.p99_limit_ms, t.budget_s) == (2.0, 3000, 4)  # catalog's route gives up after 2 s
    assert _probe(made, "client_latency")["tolerance"]["range"] == [0, 3000]
    assert _probe(made, "recovered_within")["provider"]["arguments"]["since"] == "last_heal"
    assert [a["provider"]["func"] for a in made["method"]] == ["inject_latency", "heal"]
    # the frontend's own route to catalog: a 500 ms per-try timeout retried 3 times within a 2 s timeout
    assert timing.latency(shop, "frontend", "catalog").bound_s == 2.0
    # nothing bounds a delay into reviews: clients wait the delay
    assert "no timeout on the way cuts it" in timing.latency(shop, "frontend", "reviews").why


def test_abort_share_is_chosen_so_retries_hide_it(shop: MeshModel) -> None:
    t = timing.abort(shop, "frontend", "catalog")
    assert (t.percent, t.tries, t.retried_by) == (20, 4, "catalog")
    assert (t.percent / 100) ** t.tries <= timing.MAX_ERROR_RATIO / 4
    made = new_experiment(shop, "abort").experiment
    assert _probe(made, "policy_engaged")["provider"]["arguments"] == {"policy": "retries", "service": "catalog"}
    unretried = timing.abort(shop, "frontend", "reviews")  # reviews' route retries no 5xx
    assert (unretried.tries, unretried.retried_by, unretried.percent) == (1, None, 10)
    assert unretried.max_error_ratio == pytest.approx(0.16)


def test_a_sole_pod_is_an_outage_until_it_is_back(shop: MeshModel) -> None:
    t = timing.pod_fault(shop, "pod-kill", "frontend", 100)
    assert (t.members, t.hold_s, t.budget_s) == (1, 2, 8)  # routing-canary's 8 s for a replacement after 2 s
    cut = new_experiment(shop, "partition", "frontend", "ingress").experiment  # no other frontend pod
    assert [a["provider"]["func"] for a in cut["method"]] == ["partition", "heal"]
    assert "count" not in _fault(cut)["arguments"]
    assert _probe(cut, "recovered_within")["provider"]["arguments"]["since"] == "last_heal"
    assert cut["title"] == "ingress cut off from frontend recovers within budget of the heal"


def test_a_service_the_traffic_never_reaches_is_refused(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    (mesh / "mesh.yaml").write_text(
        "apiVersion: chaosmesh-qa.io/v1alpha1\nkind: Mesh\nmetadata: {name: m}\nspec:\n"
        "  ingress: {service: a}\n  services:\n  - {name: a, versions: [{name: v1}]}\n"
        "  - {name: lonely, versions: [{name: v1, replicas: 2}]}\n")
    model = load_mesh(mesh).model
    with pytest.raises(InvalidArgument, match=r"^--service: 'lonely' gets no traffic from the ingress"):
        new_experiment(model, "pod-kill", "lonely")


@pytest.mark.parametrize("mesh", MESHES, ids=[m.name for m in MESHES])
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_kind_on_every_shipped_mesh(mesh: Path, kind: str) -> None:
    model = load_mesh(mesh).model
    made = new_experiment(model, kind, mesh_dir=str(mesh))
    experiment = made.experiment
    assert made.service in model.services
    if made.source not in (None, "ingress"):
        assert made.source in model.callers(made.service)
    recovery = _probe(experiment, "recovered_within")
    assert recovery["tolerance"]["range"] == [0, recovery["provider"]["arguments"]["budget_s"]]
    assert "Budget: " in experiment["description"]
    json.dumps(experiment)  # JSON all the way down


def test_every_choice_is_explained_per_service(shop: MeshModel) -> None:
    for service in shop.services:
        for kind in ("pod-kill", "pod-failure", "app-kill"):
            assert new_experiment(shop, kind, service).experiment["description"].count("Budget: ") == 1
