"""``chaosmesh-qa new --from DIR -o OUT``: a mesh directory from a team's Kubernetes manifests and Istio YAML.

``new_mesh_dir(source_dir, out_dir)`` reads the YAML files the loader would read (``mesh.yamlfiles``: same
walk, same bounds), finds the services (each Kubernetes ``Service`` with a selector; each host an Istio
resource names that no manifest defines, with a version per DestinationRule subset), the ingress (a
Gateway drives it; else ``--ingress``, else the backend of a Kubernetes ``Ingress``, else a ``LoadBalancer``
or ``NodePort`` Service, else the first service) and writes, next to copies of those files, the one thing
the manifests cannot say: a commented ``Mesh`` document (docs/reference/mesh.md, "Kubernetes manifests")
listing every service with an empty ``calls`` list to fill in.  The result is loaded with ``mesh.load_mesh``
in a hidden directory beside ``out_dir`` and moved into place only when it loads, so a failure writes
nothing; every problem is one ``InvalidArgument`` line naming the option (``--from``, ``-o``, ``--ingress``).
Called by ``chaosmesh_qa.cli.new`` through the package.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument, InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh, yamlfiles

MESH_FILES = ("mesh.yaml", "chaosmesh-qa-mesh.yaml")  # the first name no copied file uses
GATEWAY_GROUPS = ("networking.istio.io/", "gateway.networking.k8s.io/")
FRONT_DOOR_TYPES = ("LoadBalancer", "NodePort")
CLUSTER_SUFFIX = ("svc", "cluster", "local")


@dataclass
class _Service:
    name: str
    origin: str  # where it was found, for the comment beside it
    manifest: bool  # a Kubernetes Service: the Mesh entry is an overlay (behaviour only)
    namespace: str = "default"
    port: int | None = None
    versions: dict[str, dict[str, str]] = field(default_factory=dict)  # Istio-only: version -> extra labels
    front_door: bool = False


@dataclass(frozen=True)
class Skeleton:
    """What was written: the mesh directory, its new ``Mesh`` file, the copies, and what the loader said."""

    out_dir: Path
    mesh_file: Path
    copied: list[Path]
    services: list[str]
    ingress: str | None  # None: a Gateway drives the ingress
    notes: list[str]
    warnings: list[str]


def new_mesh_dir(source_dir: Path, out_dir: Path, ingress: str | None = None, name: str | None = None) -> Skeleton:
    """Write ``out_dir``: copies of ``source_dir``'s YAML and a ``Mesh`` document; checked before it appears."""
    _check_out(out_dir)
    files = _files(source_dir)
    found = _Found(source_dir)
    for path in files:
        for document in _documents(path):
            found.add(path, document)
    if found.mesh_file is not None:
        raise InvalidArgument(f"--from: {found.mesh_file} already holds a Mesh document: {source_dir} is a mesh "
                              f"directory (check it with: chaosmesh-qa validate --mesh {source_dir})")
    services = found.services()
    if not services:
        raise InvalidArgument(f"--from: {source_dir}: no Kubernetes Service with a selector and no Istio resource "
                              f"naming a service: nothing to build a mesh from")
    notes: list[str] = []
    front, why = None, ""
    if found.gateway is not None:
        if ingress is not None:
            raise InvalidArgument(f"--ingress: the Gateway in {found.gateway} drives the ingress; leave --ingress out")
    else:
        front, why = _front(services, found, ingress)
        if ingress is None:
            notes.append(f"ingress service: {front} ({why}); change spec.ingress.service, or pass --ingress")
    mesh_name = checks.name("--name", name) if name is not None else _label(source_dir.resolve().name)
    relative = [path.relative_to(source_dir) for path in files]
    mesh_file = next(n for n in MESH_FILES if Path(n) not in relative)
    text = _render(mesh_name, source_dir, out_dir, services, front, why, found.gateway)
    staging = out_dir.parent / f".{out_dir.name}.new-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        for path, rel in zip(files, relative, strict=True):
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staging / rel)
        (staging / mesh_file).write_text(text)
        try:
            loaded = load_mesh(staging)
        except InvalidMeshConfig as exc:
            problem = str(exc).replace(str(staging / mesh_file), f"the Mesh document written for {source_dir}")
            raise InvalidArgument(f"--from: the result would not load: {problem.replace(str(staging), str(source_dir))}"
                                  ) from None
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked): the staged directory takes its place
        os.rename(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    ours = [line.replace(str(staging), str(out_dir)) for line in loaded.warnings]
    notes += [line.replace(str(staging), str(out_dir)) for line in loaded.notes]
    return Skeleton(out_dir, out_dir / mesh_file, relative, [s.name for s in services], front, notes, ours)


# --------------------------------------------------------------------------- reading


def _check_out(out_dir: Path) -> None:
    checks.file_path("-o", str(out_dir))
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidArgument(f"-o: {out_dir} exists and is not an empty directory (nothing is overwritten)")
    if not out_dir.parent.is_dir():
        raise InvalidArgument(f"-o: {out_dir.parent}: no such directory")


def _files(source_dir: Path) -> list[Path]:
    if not source_dir.is_dir():
        raise InvalidArgument(f"--from: {source_dir}: " + ("not a directory" if source_dir.exists()
                                                             else "no such directory"))
    try:
        files, problems = yamlfiles.mesh_files(source_dir)
    except yamlfiles.FileProblem as exc:
        raise InvalidArgument(f"--from: {exc}") from None
    if problems:
        raise InvalidArgument(f"--from: {problems[0]}")
    if not files:
        raise InvalidArgument(f"--from: {source_dir}: no *.yaml or *.yml files")
    return files


def _documents(path: Path) -> list[dict[str, Any]]:
    """The mappings of one file; a file that is not YAML is reported by the loader later (with its line)."""
    try:
        parsed = yamlfiles.read_documents(yamlfiles.read_text(path))
    except (yamlfiles.FileProblem, yaml.YAMLError, ValueError, RecursionError):
        return []
    return [d.data for d in parsed if isinstance(d.data, dict)]


def _host(host: Any, namespace: str) -> tuple[str, str] | None:
    """(service, namespace) of a Kubernetes service host name; None for wildcards and names outside the cluster."""
    if not isinstance(host, str) or "*" in host or not host:
        return None
    parts = host.split(".")
    if len(parts) == 1:
        return parts[0], namespace
    if len(parts) == 2 or (len(parts) >= 3 and tuple(parts[2:]) == CLUSTER_SUFFIX[: len(parts) - 2]):
        return parts[0], parts[1]
    return None


class _Found:
    """What the documents say about services, subsets, gateways and the front door, in reading order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests: dict[str, _Service] = {}
        self.named: dict[str, _Service] = {}  # hosts named by Istio resources
        self.mesh_file: Path | None = None
        self.gateway: Path | None = None
        self.ingress_backends: list[str] = []

    def add(self, path: Path, doc: dict[str, Any]) -> None:
        kind, api = doc.get("kind"), str(doc.get("apiVersion") or "")
        meta, spec = _map(doc.get("metadata")), _map(doc.get("spec"))
        namespace = str(meta.get("namespace") or "default")
        where = f"{kind}/{meta.get('name')} ({path.relative_to(self.root)})"
        if kind == "Mesh":
            self.mesh_file = self.mesh_file or path
        elif kind == "Gateway" and api.startswith(GATEWAY_GROUPS):
            self.gateway = self.gateway or path.relative_to(self.root)
        elif kind == "Service" and api == "v1" and isinstance(spec.get("selector"), dict) and meta.get("name"):
            name = str(meta["name"])
            self.manifests.setdefault(name, _Service(name, where, True, namespace,
                                                     front_door=spec.get("type") in FRONT_DOOR_TYPES))
        elif kind == "Ingress" and api.startswith("networking.k8s.io/"):
            self.ingress_backends += _ingress_backends(spec)
        elif kind == "DestinationRule":
            named = self._name(spec.get("host"), namespace, where)
            for subset in spec.get("subsets") or []:
                if named is not None and isinstance(subset, dict) and subset.get("name"):
                    labels = {str(k): str(v) for k, v in (subset.get("labels") or {}).items() if k != "app"}
                    version = labels.pop("version", str(subset["name"]))
                    named.versions.setdefault(version, labels)
        elif kind == "VirtualService":
            gateways = spec.get("gateways") or ["mesh"]
            if "mesh" in gateways:
                for host in spec.get("hosts") or []:
                    self._name(host, namespace, where)
            for section in ("http", "tcp", "tls"):
                for route in spec.get(section) or []:
                    for destination in (route.get("route") or []) if isinstance(route, dict) else []:
                        target = destination.get("destination") if isinstance(destination, dict) else None
                        if isinstance(target, dict):
                            port = (target.get("port") or {}).get("number")
                            self._name(target.get("host"), namespace, where, port)
        elif kind == "HTTPRoute":
            for rule in spec.get("rules") or []:
                for ref in (rule.get("backendRefs") or []) if isinstance(rule, dict) else []:
                    if isinstance(ref, dict) and ref.get("kind", "Service") == "Service" and not ref.get("group"):
                        self._name(ref.get("name"), str(ref.get("namespace") or namespace), where, ref.get("port"))

    def _name(self, host: Any, namespace: str, where: str, port: Any = None) -> _Service | None:
        parsed = _host(host, namespace)
        if parsed is None:
            return None
        name, space = parsed
        service = self.named.setdefault(name, _Service(name, where, False, space))
        if isinstance(port, int) and service.port is None:
            service.port = port
        return service

    def services(self) -> list[_Service]:
        out = list(self.manifests.values())
        out += [s for name, s in self.named.items() if name not in self.manifests]
        return out


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ingress_backends(spec: dict[str, Any]) -> list[str]:
    names = []
    backend = spec.get("defaultBackend")
    rules = [backend] if isinstance(backend, dict) else []
    for rule in spec.get("rules") or []:
        for path in ((rule.get("http") or {}).get("paths") or []) if isinstance(rule, dict) else []:
            if isinstance(path, dict) and isinstance(path.get("backend"), dict):
                rules.append(path["backend"])
    for item in rules:
        service = _map(item.get("service"))
        if service.get("name"):
            names.append(str(service["name"]))
    return names


def _front(services: list[_Service], found: _Found, ingress: str | None) -> tuple[str, str]:
    names = [s.name for s in services]
    if ingress is not None:
        ingress = checks.name("--ingress", ingress)
        if ingress not in names:
            raise InvalidArgument(f"--ingress: unknown service {ingress!r} (services: {', '.join(sorted(names))})")
        return ingress, "--ingress"
    for backend in found.ingress_backends:
        if backend in names:
            return backend, "the backend of the Kubernetes Ingress"
    for service in services:
        if service.front_door:
            return service.name, "its Service is reachable from outside the cluster"
    return names[0], "the first service read: nothing else says which one outside traffic enters by"


def _label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or "mesh"


# --------------------------------------------------------------------------- writing


def _flow(value: Any) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000)).strip()


def _render(name: str, source_dir: Path, out_dir: Path, services: list[_Service], front: str | None, why: str,
            gateway: Path | None) -> str:
    lines = [
        f"# The Mesh document for the manifests and Istio YAML of {source_dir} (written by chaosmesh-qa new --from).",
        "# The manifests say which workloads run; they cannot say how each behaves in the sandbox, or whom it",
        "# calls. Fill in each service's `calls` (the demo app calls them for every request: faults on edges,",
        "# partitions and the recovery probes follow them), or give a `command` that runs your own program.",
        "# Reference: docs/reference/mesh.md (\"The Mesh kind\", \"Kubernetes manifests\").",
        f"# Check it with: chaosmesh-qa validate --mesh {out_dir}",
        "apiVersion: chaosmesh-qa.io/v1alpha1",
        "kind: Mesh",
        "metadata:",
        f"  name: {name}",
        "spec:",
    ]
    if front is None:
        lines.append(f"  # no spec.ingress: the Gateway in {gateway} drives the ingress")
    else:
        lines += [f"  ingress:  # where outside traffic enters: {why}", f"    service: {front}", "    paths: [\"/\"]"]
    lines.append("  services:")
    for service in services:
        if service.manifest:
            lines += [f"  - name: {service.name}  # {service.origin}: behaviour only, the manifests give the rest",
                      "    app:", "      calls: []  # for instance: [{service: <name>, path: /}]"]
            continue
        lines.append(f"  - name: {service.name}  # no manifest: named by {service.origin}")
        if service.namespace != "default":
            lines.append(f"    namespace: {service.namespace}")
        if service.port is not None:
            lines.append(f"    port: {service.port}")
        lines.append("    versions:  # one per DestinationRule subset; replicas: how many pods (1 if unsure)")
        for version, labels in (service.versions or {"v1": {}}).items():
            entry: dict[str, Any] = {"name": version, "replicas": 1, **({"labels": labels} if labels else {})}
            lines.append(f"    - {_flow(entry)}")
        lines += ["    app:", "      calls: []  # for instance: [{service: <name>, path: /}]"]
    return "\n".join(lines) + "\n"
