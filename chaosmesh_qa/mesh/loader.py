r"""Read a mesh directory: every ``*.yaml``/``*.yml`` file, every YAML document in it.

``load_mesh`` is the entry point used by the CLI and the sandbox: it reads the files
through ``yamlfiles`` (bounded, duplicate keys refused), or, when the directory is a kustomization, the
documents ``kubectl kustomize`` renders (``kustomize``), validates each document against
its kind's schema with ``validate_document`` (Istio kinds: ``ISTIO_KINDS``, from ``schema``, ``authz`` and
``serviceentries``; gateways: ``gateways.spec_for``; Kubernetes manifests: ``manifests``; Argo Rollouts:
``rollouts``), also used on its own
for documents that do not come from a file (the Kubernetes target's verdicts), and hands the
``documents.Document``\ s to ``build.build_model`` for cross-checks and Istio defaults.  Every problem is
reported on one line as ``<file>[:line]: <Kind>/<name>: <field path>: <reason>``; nothing but
``InvalidMeshConfig`` ever leaves ``load_mesh``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from chaosmesh_qa.errors import InvalidMeshConfig, collapsed
from chaosmesh_qa.mesh import (
    authz,
    gateways,
    kustomize,
    manifests,
    meshconfig,
    rollouts,
    schema,
    serviceentries,
    workloadentries,
    yamlfiles,
)
from chaosmesh_qa.mesh.build import build_model
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.values import join_path, show
from chaosmesh_qa.mesh.yamlfiles import FileProblem, mesh_files

# kind -> (accepted apiVersions, spec schema): ``schema``'s, and those of the modules that hold their kind's schema
ISTIO_KINDS: dict[str, tuple[tuple[str, ...], type[BaseModel]]] = {
    **schema.ISTIO_KINDS,
    **{kind: (versions, spec) for kind, versions, spec in (authz.KIND, serviceentries.KIND,
                                                                  workloadentries.KIND)},
}


@dataclass(frozen=True)
class LoadedMesh:
    model: MeshModel
    warnings: list[str]
    files: list[str]
    notes: list[str] = field(default_factory=list)  # e.g. the Kubernetes kinds ignored, on one line


def load_mesh(directory: str | Path) -> LoadedMesh:
    """Load, validate and resolve the mesh definition in ``directory``.

    Raises ``InvalidMeshConfig`` listing every problem (and nothing else, whatever the input);
    unsupported fields become warnings in the result instead.
    """
    root = Path(directory)
    try:
        files, parsed_files, problems = _read(root)
    except FileProblem as exc:
        raise InvalidMeshConfig(_single_lines([str(exc)])) from None
    if not files and not problems:
        raise InvalidMeshConfig([f"{root}: no *.yaml files in mesh directory"])
    warnings: list[str] = []
    documents: list[Document] = []
    ignored: list[str] = []
    for path, parsed in parsed_files:
        doc = validate_document(path, parsed, problems, warnings, ignored)
        if doc is not None:
            documents.append(doc)
    if problems:
        raise InvalidMeshConfig(_single_lines(problems))
    model = build_model(documents, problems, warnings, source=str(root))
    if problems:
        raise InvalidMeshConfig(_single_lines(problems))
    notes = [f"{root}: ignored, they do not shape the mesh: "
             + ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in sorted(Counter(ignored).items()))
             ] if ignored else []
    return LoadedMesh(model=model, warnings=_single_lines(warnings), files=[str(p) for p in files],
                      notes=_single_lines(notes))


def sourced_documents(directory: str | Path) -> list[tuple[Path, yamlfiles.Document]]:
    """Every YAML document ``load_mesh`` reads in ``directory`` (rendered, for a kustomization) with the path its
    problems name, for readers of the objects as written; what cannot be read is left out (``load_mesh`` names
    it)."""
    try:
        return [(path, document) for path, document in _read(Path(directory))[1] if not document.problems]
    except FileProblem:
        return []


def raw_documents(directory: str | Path) -> list[Any]:
    """The data of every document of ``sourced_documents``."""
    return [document.data for _, document in sourced_documents(directory)]


def _read(root: Path) -> tuple[list[Path], list[tuple[Path, yamlfiles.Document]], list[str]]:
    """The files read and their documents, each with the path problems name: the directory's files, or what
    ``kubectl kustomize`` renders when the directory is a kustomization (``kustomize``)."""
    kustomization = kustomize.kustomization(root)
    if kustomization is not None:
        rendered, sources = kustomize.render(root, kustomization)
        return sources, [(r.source, r.document) for r in rendered], []
    files, problems = mesh_files(root)
    return files, [(path, parsed) for path in files for parsed in _documents(path, problems)], problems


def _single_lines(messages: list[str]) -> list[str]:
    """Each message on one line, even if a name or key taken from the input holds a line break."""
    return [_printable(" ".join(m.split())) for m in messages]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in text)


def _documents(path: Path, problems: list[str]) -> list[yamlfiles.Document]:
    text = ""
    try:
        text = yamlfiles.read_text(path)
        return yamlfiles.read_documents(text)
    except FileProblem as exc:
        problems.append(str(exc))
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_error(path, exc))
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; str() spans two lines
        line = text.count("\n", 0, exc.position) + 1
        problems.append(f"{path}:{line}: YAML syntax error: "
                        f"unacceptable character #x{exc.character:04x}: {exc.reason}")
    except (yaml.YAMLError, ValueError, RecursionError, MemoryError) as exc:
        problems.append(f"{path}: cannot read YAML: {collapsed(str(exc))[:200]}")
    return []


def _syntax_error(path: Path, exc: yaml.MarkedYAMLError) -> str:
    """``file:line: YAML syntax error: <problem>``, plus where an unclosed construct started."""
    mark = exc.problem_mark or exc.context_mark
    line = f":{mark.line + 1}" if mark is not None else ""
    message = collapsed(exc.problem or exc.context or "invalid YAML")
    context = exc.context_mark
    if exc.problem and exc.context and context is not None and mark is not None and context.line != mark.line:
        # e.g. an unclosed quote or bracket: the parser notices at a later line, name where it began
        message += f" ({collapsed(exc.context)} started at line {context.line + 1})"
    return f"{path}{line}: YAML syntax error: {message}"


def validate_document(
    path: Path, parsed: yamlfiles.Document, problems: list[str], warnings: list[str],
    ignored: list[str] | None = None,
) -> Document | None:
    """One YAML document of ``path`` (as ``yamlfiles`` read it) checked against its kind's schema.

    The ``Document``, or ``None`` with the reason appended to ``problems`` (refused) or the kind to
    ``ignored`` (a Kubernetes kind that does not shape the mesh); unsupported fields are ``warnings``.
    """
    ignored = [] if ignored is None else ignored  # the Kubernetes kinds skipped, for one note
    raw = parsed.data
    where = f"{path}: document {parsed.index + 1}"
    kind = raw.get("kind") if isinstance(raw, dict) else None
    metadata = raw.get("metadata") if isinstance(raw, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if parsed.problems:
        kind, name = parsed.kind, parsed.name
    if isinstance(kind, str) and isinstance(name, str) and name:
        where = f"{path}: {_shown(kind)}/{_shown(name)}"
    if parsed.problems:
        problems.extend(_at(path, p.line, where.removeprefix(f"{path}: "), p.path or "(document)", p.reason)
                        for p in parsed.problems)
        return None
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping with apiVersion, kind, metadata, spec")
        return None
    if not isinstance(kind, str):
        problems.append(f"{where}: kind: expected a string, got {_type_name(kind)}")
        return None
    if kind == "Mesh":
        mesh = _model_or_problem(where, schema.MeshDoc, raw, "", problems)
        if mesh is None:
            return None
        _warn_unsupported(where, mesh, "", warnings)
        return Document(str(path), "Mesh", mesh.metadata.name, mesh.metadata.namespace, mesh.spec)
    if meshconfig.is_mesh_config(raw):  # istiod's MeshConfig: the trust domain
        domains = meshconfig.validate(raw, where, problems, warnings)
        return None if domains is None else Document(str(path), "ConfigMap", meshconfig.NAME, meshconfig.NAMESPACE,
                                                     domains)
    argo = rollouts.treatment(kind, raw.get("apiVersion"))
    if argo is not None:
        return _argo(path, where, raw, kind, argo, problems, warnings, ignored)
    treatment = manifests.kubernetes_kind(raw)
    if treatment is not None:
        return _kubernetes(path, where, raw, kind, treatment, problems, warnings, ignored)
    gateway = gateways.spec_for(kind, raw.get("apiVersion"))
    if gateway == "ignored":
        ignored.append(kind)
        return None
    if isinstance(gateway, str):
        problems.append(f"{where}: {gateway if gateway.startswith('apiVersion:') else 'kind: ' + gateway}")
        return None
    if gateway is not None:
        spec_type: type[BaseModel] = gateway
    elif kind not in ISTIO_KINDS:
        supported = ", ".join(["Mesh", *ISTIO_KINDS, "Gateway", "HTTPRoute", *manifests.KINDS, rollouts.KIND])
        problems.append(f"{where}: kind: unknown kind {show(kind)} (supported: {supported})")
        return None
    else:
        versions, spec_type = ISTIO_KINDS[kind]
        api_version = raw.get("apiVersion")
        if not isinstance(api_version, str) or api_version not in versions:
            problems.append(
                f"{where}: apiVersion: {show(api_version)} is not a {kind} API version "
                f"(expected one of {', '.join(versions)})"
            )
            return None
    envelope = _model_or_problem(where, schema.IstioDoc, raw, "", problems)
    if envelope is None:
        return None
    spec = _model_or_problem(where, spec_type, envelope.spec, "spec", problems)
    if spec is None:
        return None
    _warn_unsupported(where, envelope, "", warnings, skip=("spec",))
    _warn_unsupported(where, spec, "spec", warnings)
    return Document(str(path), kind, envelope.metadata.name, envelope.metadata.namespace, spec)


def _kubernetes(path: Path, where: str, raw: dict[str, Any], kind: str, treatment: str, problems: list[str],
                warnings: list[str], ignored: list[str]) -> Document | None:
    """A document of Kubernetes' own API groups: read (``manifests.KINDS``), ignored, warned or refused.
    Only the fields ``manifests`` reads are checked; the rest of a manifest is not used."""
    if treatment == "ignored":
        ignored.append(kind)
        return None
    if treatment == "refused":
        problems.append(f"{where}: kind: {kind}: {manifests.refusal(kind)}")
        return None
    if treatment == "warned":
        warnings.append(f"{where}: kind: {kind} is {manifests.warning(kind)}")
        return None
    wrong = manifests.problem_in_version(kind, raw.get("apiVersion"))
    if wrong:
        problems.append(f"{where}: {wrong}")
        return None
    envelope = _model_or_problem(where, manifests.K8sDoc, raw, "", problems)
    if envelope is None:
        return None
    raw_spec = {"labels": envelope.metadata.labels} if kind == "Namespace" else envelope.spec  # its labels matter
    spec = _model_or_problem(where, manifests.SPECS[kind], raw_spec, "spec", problems)
    if spec is None:
        return None
    return Document(str(path), kind, envelope.metadata.name, envelope.metadata.namespace, spec)


def _argo(path: Path, where: str, raw: dict[str, Any], kind: str, treatment: str, problems: list[str],
          warnings: list[str], ignored: list[str]) -> Document | None:
    """A document of Argo's API group: a Rollout read (only the fields ``rollouts`` reads are checked, as for a
    Deployment), an Experiment warned, the rest ignored."""
    if treatment != "read":
        if treatment == "warned":
            warnings.append(f"{where}: kind: {kind} is {rollouts.warning(kind)}")
        else:
            ignored.append(kind)
        return None
    wrong = rollouts.problem_in_version(raw.get("apiVersion"))
    if wrong:
        problems.append(f"{where}: {wrong}")
        return None
    envelope = _model_or_problem(where, manifests.K8sDoc, raw, "", problems)
    spec = None if envelope is None else _model_or_problem(where, rollouts.RolloutSpec, envelope.spec, "spec",
                                                           problems)
    return None if spec is None else Document(str(path), kind, envelope.metadata.name, envelope.metadata.namespace,
                                              spec)


def _at(path: Path, line: int, resource: str, field: str, reason: str) -> str:
    location = f"{path}:{line}" if line else str(path)
    return f"{location}: {resource}: {field}: {reason}"


def _shown(value: object) -> str:
    """A name or kind from the input as-is when it is a plain word, else quoted and bounded."""
    if isinstance(value, str) and value.isascii() and value.replace("-", "").replace(".", "").isalnum() \
            and len(value) <= 253:
        return value
    return show(value)


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), type(value).__name__)


# What the sandbox does instead, for fields Istio reads that it does not: the warning says the consequence
UNSUPPORTED_CONSEQUENCES = {
    "spec.http[].match[].gateways": "the match applies wherever the VirtualService is bound (mesh and gateways)",
    "spec.http[].match[].method": "the route matches requests of every method",
    "spec.http[].match[].queryParams": "the route matches whatever the query string",
    "spec.http[].match[].ignoreUriCase": "uri is matched case-sensitively",
    "spec.http[].match[].port": "the route matches requests on every port",
    "spec.http[].match[].withoutHeaders": "the route also matches requests that carry those headers",
    "spec.http[].rewrite": "requests are forwarded with their original path and authority",
    "spec.http[].headers": "no request or response header is added, set or removed",
    "spec.http[].corsPolicy": "no CORS response headers are added",
    "spec.exportTo": "the resource applies in every namespace",
}


def _warn_unsupported(where: str, model: BaseModel, prefix: str, warnings: list[str],
                      skip: tuple[str, ...] = ()) -> None:
    for path in schema.unsupported_fields(model, prefix, skip):
        consequence = UNSUPPORTED_CONSEQUENCES.get(re.sub(r"\[\d+\]", "[]", path))
        warnings.append(f"{where}: {path}: unsupported field, ignored" + (f": {consequence}" if consequence else ""))


def _model_or_problem(
    where: str, model: type[BaseModel], raw: Any, prefix: str, problems: list[str]
) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            field = _field_path(prefix, error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {field or '(document)'}: {message}")
        return None


def _field_path(prefix: str, loc: tuple[Any, ...]) -> str:
    """pydantic's location as a field path: list positions as ``[i]``, map keys as ``.key``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        elif str(part).startswith(("function-after", "literal[", "constrained-", "union[", "nullable[")):
            continue
        else:
            path = join_path(path, part)
    return path
