"""Istio's canonical service and revision of a workload, from its pods' labels.

Istio names a workload in its telemetry (``*_canonical_service``, ``*_canonical_revision``, and the
``destination_version`` of ``istio_requests_total``) by the first of these labels a pod carries:
``service.istio.io/canonical-name``, ``app.kubernetes.io/name``, ``app`` (else the workload's name, a Deployment's
for example), and ``service.istio.io/canonical-revision``, ``app.kubernetes.io/version``, ``version`` (else
``latest``).  ``manifests`` names a manifest workload's versions by the revision; the Kubernetes API emulation
labels its pods and its Istio metrics with both; the Kubernetes target reads a service's canonical name from its
pods to match Istio's source labels.  Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

CANONICAL_NAME_LABEL = "service.istio.io/canonical-name"
CANONICAL_REVISION_LABEL = "service.istio.io/canonical-revision"
NAME_LABELS = (CANONICAL_NAME_LABEL, "app.kubernetes.io/name", "app")
REVISION_LABELS = (CANONICAL_REVISION_LABEL, "app.kubernetes.io/version", "version")
DEFAULT_REVISION = "latest"


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    return next((labels[k] for k in keys if k in labels), None)


def canonical_service(labels: Mapping[str, str], workload: str) -> str:
    """The canonical service of pods with ``labels`` run by ``workload`` (a Deployment's name, say)."""
    return _first(labels, NAME_LABELS) or workload


def canonical_revision(labels: Mapping[str, str]) -> str:
    """The canonical revision of pods with ``labels``."""
    return _first(labels, REVISION_LABELS) or DEFAULT_REVISION
