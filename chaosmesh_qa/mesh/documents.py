"""The validated documents of a mesh directory (``Document``), and which of them stand, as
``kubectl apply -f DIR`` would leave them.

``loader.validate_document`` makes a ``Document`` of each YAML document read; every module that
reads one (``build`` and the per-kind modules below it) imports it from here, so the mesh package
depends downward only: ``loader`` -> ``build`` -> per-kind modules -> ``documents`` / ``schema`` /
``model``.  ``build.build_model`` calls ``latest_documents`` first: two Istio resources of the same kind,
namespace and name are one object in a cluster, and applying the directory keeps the last one
read (file-name order, then document order).  The earlier one is dropped with a warning naming
both places, instead of both being enforced.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

# the tool's own kind is checked separately (exactly one Mesh document)
OWN_KINDS = frozenset({"Mesh"})


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


def latest_documents(documents: list[Document], warnings: list[str]) -> list[Document]:
    # the spec's type stands for the API group: Istio's Gateway and the Gateway API's are two objects
    last: dict[tuple[type, str, str, str], int] = {}
    for index, doc in enumerate(documents):
        if doc.kind not in OWN_KINDS:
            last[type(doc.spec), doc.kind, doc.namespace, doc.name] = index
    kept: list[Document] = []
    for index, doc in enumerate(documents):
        key = (type(doc.spec), doc.kind, doc.namespace, doc.name)
        if doc.kind in OWN_KINDS or last[key] == index:
            kept.append(doc)
            continue
        later = documents[last[key]]
        warnings.append(f"{doc.where}: metadata.name: {doc.kind} {doc.namespace}/{doc.name} is defined again in "
                        f"{later.file}; as kubectl apply would, the sandbox keeps that later one and ignores "
                        "this one")
    return kept
