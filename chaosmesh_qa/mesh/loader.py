"""Read a mesh directory: every ``*.yaml``/``*.yml`` file, every YAML document in it.

``load_mesh`` is the entry point used by the CLI and the sandbox: it parses the
files, validates each document against ``schema`` by kind, and hands the documents
to ``model.build_model`` for cross-checks and Istio defaults.  Every problem is
reported as ``<file>[:line]: <Kind>/<name>: <field path>: <reason>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.build import build_model
from chaosmesh_qa.mesh.model import MeshModel


@dataclass(frozen=True)
class Document:
    """One validated YAML document and where it came from."""

    file: str
    kind: str
    name: str
    namespace: str
    spec: BaseModel

    @property
    def where(self) -> str:
        return f"{self.file}: {self.kind}/{self.name}"


@dataclass(frozen=True)
class LoadedMesh:
    model: MeshModel
    warnings: list[str]
    files: list[str]


def load_mesh(directory: str | Path) -> LoadedMesh:
    """Load, validate and resolve the mesh definition in ``directory``.

    Raises ``InvalidMeshConfig`` listing every problem; unsupported fields become
    warnings in the result instead.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InvalidMeshConfig([f"{root}: mesh directory does not exist"])
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise InvalidMeshConfig([f"{root}: no *.yaml files in mesh directory"])
    problems: list[str] = []
    warnings: list[str] = []
    documents: list[Document] = []
    for path in files:
        for index, raw in _documents(path, problems):
            doc = _validate(path, index, raw, problems, warnings)
            if doc is not None:
                documents.append(doc)
    if problems:
        raise InvalidMeshConfig(_single_lines(problems))
    model = build_model(documents, problems, warnings, source=str(root))
    if problems:
        raise InvalidMeshConfig(_single_lines(problems))
    return LoadedMesh(model=model, warnings=_single_lines(warnings), files=[str(p) for p in files])


def _single_lines(messages: list[str]) -> list[str]:
    """Each message on one line, even if a name or key taken from the input holds a line break."""
    return [" ".join(part.strip() for part in m.splitlines()) if len(m.splitlines()) > 1 else m
            for m in messages]


def _documents(path: Path, problems: list[str]) -> list[tuple[int, Any]]:
    text = ""
    try:
        text = path.read_text(encoding="utf-8")
        loaded = list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_error(path, exc))
        return []
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; str() spans two lines
        line = text.count("\n", 0, exc.position) + 1
        problems.append(f"{path}:{line}: YAML syntax error: "
                        f"unacceptable character #x{exc.character:04x}: {exc.reason}")
        return []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"{path}: cannot read: {_one_line(str(exc))}")
        return []
    return [(i, doc) for i, doc in enumerate(loaded) if doc is not None]


def _syntax_error(path: Path, exc: yaml.MarkedYAMLError) -> str:
    """``file:line: YAML syntax error: <problem>``, plus where an unclosed construct started."""
    mark = exc.problem_mark or exc.context_mark
    line = f":{mark.line + 1}" if mark is not None else ""
    message = _one_line(exc.problem or exc.context or "invalid YAML")
    context = exc.context_mark
    if exc.problem and exc.context and context is not None and mark is not None and context.line != mark.line:
        # e.g. an unclosed quote or bracket: the parser notices at a later line, name where it began
        message += f" ({_one_line(exc.context)} started at line {context.line + 1})"
    return f"{path}{line}: YAML syntax error: {message}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _validate(
    path: Path, index: int, raw: Any, problems: list[str], warnings: list[str]
) -> Document | None:
    where = f"{path}: document {index + 1}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping with apiVersion, kind, metadata, spec")
        return None
    kind = raw.get("kind")
    name = (raw.get("metadata") or {}).get("name") if isinstance(raw.get("metadata"), dict) else None
    if name:
        where = f"{path}: {kind}/{name}"
    if kind == "Mesh":
        mesh = _model_or_problem(where, schema.MeshDoc, raw, "", problems)
        if mesh is None:
            return None
        _warn_unsupported(where, mesh, "", warnings)
        return Document(str(path), "Mesh", mesh.metadata.name, mesh.metadata.namespace, mesh.spec)
    if kind not in schema.ISTIO_KINDS:
        supported = ", ".join(["Mesh", *schema.ISTIO_KINDS])
        problems.append(f"{where}: kind: unknown kind {kind!r} (supported: {supported})")
        return None
    versions, spec_type = schema.ISTIO_KINDS[kind]
    if raw.get("apiVersion") not in versions:
        problems.append(
            f"{where}: apiVersion: {raw.get('apiVersion')!r} is not a {kind} API version "
            f"(expected one of {', '.join(versions)})"
        )
        return None
    envelope = _model_or_problem(where, schema.IstioDoc, raw, "", problems)
    spec = _model_or_problem(where, spec_type, raw.get("spec") or {}, "spec", problems)
    if envelope is None or spec is None:
        return None
    _warn_unsupported(where, envelope, "", warnings)
    _warn_unsupported(where, spec, "spec", warnings)
    return Document(str(path), kind, envelope.metadata.name, envelope.metadata.namespace, spec)


def _warn_unsupported(where: str, model: BaseModel, prefix: str, warnings: list[str]) -> None:
    warnings.extend(
        f"{where}: {field}: unsupported field, ignored"
        for field in schema.unsupported_fields(model, prefix)
    )


def _model_or_problem(
    where: str, model: type[BaseModel], raw: Any, prefix: str, problems: list[str]
) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            field = _field_path(prefix, error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {field or '(document)'}: {message}")
        return None


def _field_path(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-after", "literal[", "constrained-")):
            continue
        else:
            path = f"{path}.{part}" if path else str(part)
    return path
