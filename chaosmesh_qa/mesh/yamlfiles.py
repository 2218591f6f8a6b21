"""Reading a mesh directory's YAML safely: bounded, strict about keys, one line per problem.

``loader.load_mesh`` calls ``mesh_files`` to list the files and ``read_documents`` to parse each.
Guards, all reported as ``<file>[:<line>]: ...`` problems instead of exceptions:

* at most ``MAX_FILES`` files of at most ``MAX_FILE_BYTES`` and ``MAX_DOCUMENTS`` documents each;
* only regular files (symbolic links followed); a dangling link, a
  link loop, a FIFO or a directory named ``*.yaml`` is an error, never skipped or opened;
* nesting is checked on the event stream before any recursive composing (``MAX_DEPTH``);
* aliases are counted as expanded (an "alias bomb" stops at ``MAX_NODES``, recursion is refused);
* a key given twice in one mapping is an error (YAML would silently keep the last), as in
  ``kubectl``; non-string keys are refused, except integers, which become strings as in Kubernetes.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chaosmesh_qa.mesh.values import join_path

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000  # per document, aliases expanded
MAX_DOCUMENTS = 1000  # per file
MAX_FILES = 256
_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Loader):
    """The safe loader, with integer keys turned into strings (the node check refused all others)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep)
        return {str(k) if type(k) is int else k: v for k, v in mapping.items()}


@dataclass
class Document:
    """One parsed YAML document, or the problems that kept it from being used."""

    index: int
    line: int
    data: Any = None
    kind: str | None = None  # as written first in the document, for naming it in problems
    name: str | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """A problem inside a document: the loader adds the file and the resource once it knows them."""

    line: int
    path: str
    reason: str


class FileProblem(Exception):
    """A file cannot be used at all; the message is one line starting with the file (and line)."""


def mesh_files(root: Path) -> tuple[list[Path], list[str]]:
    """The ``*.yaml``/``*.yml`` entries under ``root`` that are usable files, and one problem per other one.

    Subdirectories are read too, each in name order, as ``kubectl apply -f DIR -R`` walks them
    (a symbolic link to a directory is not followed, as kubectl does not).
    """
    try:
        if not root.is_dir():
            raise FileProblem(f"{root}: mesh directory does not exist")
        entries = _walk(root, root, 0)
    except OSError as exc:
        raise FileProblem(f"{root}: cannot read mesh directory: {_reason(exc)}") from None
    if len(entries) > MAX_FILES:
        raise FileProblem(f"{root}: more than {MAX_FILES} *.yaml files in the mesh directory")
    files: list[Path] = []
    problems: list[str] = []
    for path in entries:
        problem = _unusable(path)
        if problem is None:
            files.append(path)
        else:
            problems.append(f"{path}: {problem}")
    return files, problems


def _walk(root: Path, directory: Path, depth: int) -> list[Path]:
    found: list[Path] = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".yaml", ".yml"):
            found.append(path)  # a directory named *.yaml is reported by _unusable, not walked
        elif path.is_dir() and not path.is_symlink():
            if depth >= MAX_DEPTH:
                raise FileProblem(f"{path}: directories nested deeper than {MAX_DEPTH} levels")
            found.extend(_walk(root, path, depth + 1))
        if len(found) > MAX_FILES:
            raise FileProblem(f"{root}: more than {MAX_FILES} *.yaml files in the mesh directory")
    return found


def _unusable(path: Path) -> str | None:
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno == errno.ENOENT and path.is_symlink():
            return f"dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
        return f"cannot read: {_reason(exc)}"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > MAX_FILE_BYTES:
        return f"file too large ({info.st_size} bytes, at most {MAX_FILE_BYTES})"
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or " ".join(str(exc).split())


def read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise FileProblem(f"{path}: cannot read: {_reason(exc)}") from None
    if len(data) > MAX_FILE_BYTES:
        raise FileProblem(f"{path}: file too large (more than {MAX_FILE_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileProblem(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def read_documents(text: str) -> list[Document]:
    """Parse every document of ``text``; YAML syntax errors propagate as ``yaml.YAMLError``."""
    _check_nesting(text)
    loader = _StrictLoader(text)
    documents: list[Document] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if index >= MAX_DOCUMENTS:
                raise yaml.MarkedYAMLError(problem=f"more than {MAX_DOCUMENTS} YAML documents in one file",
                                           problem_mark=node.start_mark)
            line = node.start_mark.line + 1 if node.start_mark else 0
            document = Document(index, line, None, *_identity(node))
            document.problems = _NodeCheck().problems(node)
            if not document.problems:
                document.data = loader.construct_document(node)
            if document.problems or document.data is not None:
                documents.append(document)
            index += 1
    finally:
        loader.dispose()
    return documents


def _identity(root: yaml.Node) -> tuple[str | None, str | None]:
    """``kind`` and ``metadata.name`` of a document's node (first occurrence), without constructing it."""

    def scalar(node: yaml.Node, key: str) -> yaml.Node | None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    return v
        return None

    kind = scalar(root, "kind")
    metadata = scalar(root, "metadata")
    name = scalar(metadata, "name") if metadata is not None else None
    return (kind.value if isinstance(kind, yaml.ScalarNode) else None,
            name.value if isinstance(name, yaml.ScalarNode) else None)


def _check_nesting(text: str) -> None:
    """Refuse deep nesting (and too many documents) from the event stream, before the recursive
    composer sees it."""
    depth = documents = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > MAX_DOCUMENTS:
                raise yaml.MarkedYAMLError(problem=f"more than {MAX_DOCUMENTS} YAML documents in one file",
                                           problem_mark=event.start_mark)  # type: ignore[arg-type]
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nesting deeper than {MAX_DEPTH} levels",
                                           problem_mark=event.start_mark)  # type: ignore[arg-type]
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _NodeCheck:
    """Walks a composed document once per distinct node: expanded size, depth, keys."""

    def __init__(self) -> None:
        self._size: dict[int, int] = {}
        self._open: set[int] = set()
        self._found: list[Problem] = []

    def problems(self, root: yaml.Node) -> list[Problem]:
        try:
            size = self._visit(root, "", 0)
        except _Stop as stop:
            return [stop.problem]
        if size > MAX_NODES:
            return [Problem(_line(root), "", f"more than {MAX_NODES} values once YAML aliases are expanded")]
        return self._found

    def _visit(self, node: yaml.Node, path: str, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _Stop(Problem(_line(node), path, f"nesting deeper than {MAX_DEPTH} levels (with YAML "
                                "aliases expanded)"))
        key = id(node)
        if key in self._size:
            return self._size[key]
        if key in self._open:
            raise _Stop(Problem(_line(node), path, "a YAML alias refers to a node containing it"))
        self._open.add(key)
        size = 1
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                size += self._visit(item, f"{path}[{i}]", depth + 1)
                self._limit(size, node, path)
        elif isinstance(node, yaml.MappingNode):
            size += self._mapping(node, path, depth)
        self._open.discard(key)
        self._size[key] = size
        return size

    def _mapping(self, node: yaml.MappingNode, path: str, depth: int) -> int:
        size = 0
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE:
                size += self._visit(value_node, path, depth + 1)
                continue
            if not isinstance(name, str) or key_node.tag not in (_STR, _INT):
                shown = name if isinstance(name, str) else type(key_node).__name__.removesuffix("Node").lower()
                self._found.append(Problem(_line(key_node), path, f"mapping key {shown!r} is not a string "
                                           "(quote it)"))
                continue
            if name in seen:
                self._found.append(Problem(_line(key_node), join_path(path, name), f"duplicate key {name!r} "
                                           f"(first at line {seen[name]}; YAML would keep only the last)"))
            else:
                seen[name] = key_node.start_mark.line + 1
            size += 1 + self._visit(value_node, join_path(path, name), depth + 1)
            self._limit(size, node, path)
        return size

    @staticmethod
    def _limit(size: int, node: yaml.Node, path: str) -> None:
        if size > MAX_NODES:
            raise _Stop(Problem(_line(node), path, f"more than {MAX_NODES} values once YAML aliases are "
                                "expanded"))


class _Stop(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.reason)
        self.problem = problem


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1 if node.start_mark is not None else 0
