"""A mesh directory that is a kustomization, rendered with ``kubectl kustomize`` before it is loaded.

``loader.load_mesh`` asks ``kustomization`` whether the directory holds a ``kustomization.yaml`` (or
``kustomization.yml``, ``Kustomization``, the names kustomize reads) and then loads the documents ``render``
returns instead of the directory's files: what ``kubectl apply -k DIR`` would apply, overlays and patches in force.
``kubectl`` (which embeds kustomize) renders a wrapper kustomization whose only resource is the directory, with
kustomize's ``originAnnotations`` build metadata on, so that each rendered document names the file it came from;
the annotation is removed before the document is read, and a problem in it reads
``<that file> (kustomize): <Kind>/<name>: <field>: <reason>`` (a document kustomize generated names the
kustomization file).  Line numbers are not given: they would be the rendered stream's.  A failure of kustomize is
one line, ``<kustomization file>: kustomize: <its message>``, with nothing loaded.  Bounded: ``TIMEOUT_S`` for
kubectl, ``MAX_OUTPUT_BYTES`` of output, and ``yamlfiles``' limits on the documents.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from chaosmesh_qa.errors import collapsed
from chaosmesh_qa.mesh import yamlfiles
from chaosmesh_qa.mesh.yamlfiles import FileProblem

NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")  # as kustomize looks for them, in order
TIMEOUT_S = 60.0  # a remote base is fetched with git: bounded
MAX_OUTPUT_BYTES = 16 << 20
ORIGIN = "config.kubernetes.io/origin"
_ERR = re.compile(r'err="((?:[^"\\]|\\.)*)"')  # kubectl's klog line: ... "command failed" err="<Go-quoted>"


@dataclass(frozen=True)
class Rendered:
    """One rendered document and the file it is shown as coming from."""

    source: Path  # "<file> (kustomize)": the resource's own file, or the kustomization for a generated one
    document: yamlfiles.Document


def kustomization(root: Path) -> Path | None:
    """The kustomization file at the top of ``root``, if it is a kustomization (None for a directory that cannot
    be read: ``yamlfiles.mesh_files`` names why)."""
    try:
        return next((root / name for name in NAMES if (root / name).is_file()), None)
    except OSError:  # a name too long, say
        return None


def render(root: Path, kustomization_file: Path) -> tuple[list[Rendered], list[Path]]:
    """The documents ``kubectl kustomize root`` renders, and the files they came from.

    Raises ``FileProblem`` (one line naming the kustomization) when kustomize fails or kubectl is missing."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise FileProblem(f"{kustomization_file}: kustomize: kubectl not found on PATH (it renders kustomizations: "
                          "install Debian's kubernetes-client)")
    absolute = root.absolute()
    with tempfile.TemporaryDirectory(prefix="chaosmesh-qa-kustomize-") as wrapper:
        (Path(wrapper) / "kustomization.yaml").write_text(json.dumps({
            "resources": [os.path.relpath(absolute, wrapper)], "buildMetadata": ["originAnnotations"]}))
        code, out, err = _kustomize(kubectl, Path(wrapper), kustomization_file)
        origins = code == 0
        if not origins:  # kustomize's message about the directory itself, in the user's own paths
            code, out, err = _kustomize(kubectl, absolute, kustomization_file)
        if code != 0:
            raise FileProblem(f"{kustomization_file}: kustomize: {_message(err)}")
        text = _text(out, kustomization_file)
        try:
            documents = yamlfiles.read_documents(text)
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise FileProblem(f"{kustomization_file}: kustomize: its output is not readable YAML: "
                              f"{collapsed(str(exc))[:200]}") from None
        rendered: list[Rendered] = []
        for document in documents:
            origin = _pop_origin(document.data) if origins else None
            source = _source(origin, Path(wrapper), absolute, root) or kustomization_file
            rendered.append(Rendered(Path(f"{source} (kustomize)"), replace(
                document, line=0, problems=[replace(p, line=0) for p in document.problems])))
    files = list(dict.fromkeys(Path(str(r.source).removesuffix(" (kustomize)")) for r in rendered))
    return rendered, [kustomization_file, *(f for f in files if f != kustomization_file)]


def _kustomize(kubectl: str, directory: Path, kustomization_file: Path) -> tuple[int, bytes, bytes]:
    try:
        done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, timeout=TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise FileProblem(f"{kustomization_file}: kustomize: no output within {TIMEOUT_S:g} s (a remote base "
                          "that cannot be fetched?)") from None
    except OSError as exc:
        raise FileProblem(f"{kustomization_file}: kustomize: cannot run kubectl: {exc.strerror or exc}") from None
    return done.returncode, done.stdout, done.stderr


def _message(stderr: bytes) -> str:
    """kustomize's own words: the ``err="..."`` of kubectl's error line, else its stderr, on one line."""
    text = stderr.decode("utf-8", "replace")
    found = _ERR.search(text)
    if found:
        try:
            text = json.loads(f'"{found.group(1)}"')
        except ValueError:
            text = found.group(1)
    text = collapsed(text)
    return (text if len(text) <= 400 else text[:397] + "...") or "failed, without a message"


def _text(output: bytes, kustomization_file: Path) -> str:
    if len(output) > MAX_OUTPUT_BYTES:
        raise FileProblem(f"{kustomization_file}: kustomize: its output is larger than {MAX_OUTPUT_BYTES} bytes")
    try:
        return output.decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem(f"{kustomization_file}: kustomize: its output is not UTF-8 text") from None


def _pop_origin(data: Any) -> dict[str, Any] | None:
    """The origin annotation kustomize added (removed from the document: it is not the team's)."""
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(metadata, dict):
        return None
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict) or not isinstance(annotations.get(ORIGIN), str):
        return None
    text = annotations.pop(ORIGIN)
    if not annotations:
        del metadata["annotations"]
    try:
        origin = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return origin if isinstance(origin, dict) else None


def _source(origin: dict[str, Any] | None, wrapper: Path, absolute: Path, root: Path) -> Path | None:
    """The file a rendered resource came from, shown under ``root`` as the user named it (None: generated, or
    from a remote base)."""
    path = origin.get("path") if origin else None
    if not isinstance(path, str) or not path or (origin and origin.get("repo")):
        return None
    found = os.path.normpath(wrapper / path)
    return Path(os.path.normpath(root / os.path.relpath(found, absolute)))
