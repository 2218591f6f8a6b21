"""The few Kubernetes API calls the Kubernetes target makes, with errors turned into one-line semantic ones.

``KubernetesTarget``, the lease bookkeeping and the reaper call only this class, so the RBAC manifest in
deploy/kubernetes/ can list exactly what is used here.  With ``dry_run`` every write (create, update, patch,
delete) is recorded in ``planned`` instead of being sent: ``chaosmesh-qa plan`` and
``chaosmesh_qa_dry_run: true`` print those and touch nothing (reads still go to the cluster).
Responses are read as plain JSON, not through the client's generated models: those reject objects with a
field they do not expect (an API server newer, or older, than the client).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from chaosmesh_qa.errors import FaultRejected, TargetUnavailable
from chaosmesh_qa.targets.kubernetes.objects import CONFIGMAP, KINDS, POD, Kind
from chaosmesh_qa.targets.kubernetes.settings import REQUEST_TIMEOUT_S

T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
# The API server's ``Date`` header has a resolution of one second: a local clock within this of it (and within
# half the request's round trip, when the server is slow to answer) is taken as in step (the header cannot tell
# better), a clock further off is corrected by the measured offset.
CLOCK_RESOLUTION_S = 1.5


class NotFound(Exception):
    """The object (or the namespace) does not exist: callers decide what that means."""


class Conflict(Exception):
    """Optimistic concurrency lost: the object changed (or went) since it was read."""


class Cluster:
    def __init__(self, api: client.ApiClient, dry_run: bool = False) -> None:
        self.api = api
        self.core: Any = client.CoreV1Api(api)  # bodies are plain dicts: no use for the generated models' types
        self.custom: Any = client.CustomObjectsApi(api)
        self.dry_run = dry_run
        self.planned: list[dict[str, Any]] = []
        self._clock_offset_s: float | None = None

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    # ------------------------------------------------------------------ the cluster's clock

    def now(self) -> float:
        """The API server's time (epoch s): what every lease's start, expiry and end are written in.

        A runner's laptop and the in-cluster reaper may disagree by minutes; both measure the API server's
        ``Date`` header once and write and judge expiry in its time, so a lease expires when its TTL says
        whoever reaps it.
        """
        return time.time() + self.clock_offset_s()

    def server_version(self) -> str:
        """The API server's ``gitVersion`` (``/version``)."""
        return str(self._dict(self._get_version()).get("gitVersion") or "unknown")

    def clock_offset_s(self) -> float:
        """The API server's clock minus this machine's (0 within ``CLOCK_RESOLUTION_S``), measured once."""
        if self._clock_offset_s is None:
            before = time.time()
            response = self._get_version()
            after = time.time()
            date = response.headers.get("Date") if hasattr(response, "headers") else None
            offset = 0.0
            if date:
                try:
                    server = email.utils.parsedate_to_datetime(date).timestamp() + 0.5  # mid of its second
                    offset = server - (before + after) / 2
                except (TypeError, ValueError):
                    offset = 0.0
            uncertain_s = CLOCK_RESOLUTION_S + (after - before) / 2  # the Date was stamped anywhere in the trip
            self._clock_offset_s = round(offset, 3) if abs(offset) > uncertain_s else 0.0
        return self._clock_offset_s

    def _get_version(self) -> Any:
        """``GET /version``: its body names the server, its ``Date`` header tells the server's clock."""
        return self._call("get", "version", None, lambda: client.VersionApi(self.api).get_code(**_T))

    # ------------------------------------------------------------------ reads

    def namespace_exists(self, namespace: str) -> bool:
        try:
            self._call("get", "namespaces", None, lambda: self.core.read_namespace(namespace, **_T))
            return True
        except NotFound:
            return False

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._dict(self._call("get", "services", namespace,
                                         lambda: self.core.read_namespaced_service(name, namespace, **_T)))
        except NotFound:
            return None

    def get_node(self, name: str) -> dict[str, Any] | None:
        """A Node (cluster-scoped): its labels say its region and zone (``get`` on nodes, a ClusterRole)."""
        try:
            return self._dict(self._call("get", "nodes", None, lambda: self.core.read_node(name, **_T)))
        except NotFound:
            return None

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        result = self._call("list", "services", namespace, lambda: self.core.list_namespaced_service(namespace, **_T))
        return list(self._dict(result).get("items") or [])

    def list_pods(self, namespace: str, selector: str | None) -> list[dict[str, Any]]:
        result = self._call("list", "pods", namespace,
                            lambda: self.core.list_namespaced_pod(namespace, label_selector=selector, **_T))
        return list(self._dict(result).get("items") or [])

    def watch_pods(self, namespace: str, selector: str, timeout_s: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, pod) until ``timeout_s`` (server side) ends the watch."""
        stream = watch.Watch(return_type="object").stream(  # "object": events carry plain dicts
            self.core.list_namespaced_pod, namespace, label_selector=selector, timeout_seconds=timeout_s,
            _request_timeout=(REQUEST_TIMEOUT_S[0], timeout_s + 5))
        iterator = iter(stream)
        while True:
            try:
                event = self._call("watch", "pods", namespace, lambda: next(iterator))
            except StopIteration:
                return
            yield str(event["type"]), self._dict(event["object"])

    def list_custom(self, kind: Kind, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        result = self._call("list", kind.plural, namespace, lambda: self.custom.list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, label_selector=selector or "", **_T))
        return list(self._dict(result).get("items") or [])

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            if kind is CONFIGMAP:
                return self._dict(self._call("get", kind.plural, namespace,
                                             lambda: self.core.read_namespaced_config_map(name, namespace, **_T)))
            if kind is POD:
                return self._dict(self._call("get", kind.plural, namespace,
                                             lambda: self.core.read_namespaced_pod(name, namespace, **_T)))
            return self._dict(self._call(
                "get", kind.plural, namespace, lambda: self.custom.get_namespaced_custom_object(
                    kind.group, kind.version, namespace, kind.plural, name, **_T)))
        except NotFound:
            return None

    def pod_proxy_get(self, namespace: str, pod: str, port: int, path: str) -> str:
        """``GET pods/POD:PORT/proxy/PATH``: what the pod serves on that port, through the API server (RBAC:
        ``get pods/proxy``); Istio's sidecar serves its merged Prometheus stats on 15020."""
        response = self._call("get", "pods/proxy", namespace,
                              lambda: self.core.connect_get_namespaced_pod_proxy_with_path(
                                  f"{pod}:{port}", namespace, path, **_T))
        return str(response.data.decode("utf-8", "replace")) if hasattr(response, "data") else str(response)

    def list_configmaps(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = self._call("list", "configmaps", namespace,
                            lambda: self.core.list_namespaced_config_map(namespace, label_selector=selector, **_T))
        return list(self._dict(result).get("items") or [])

    # ------------------------------------------------------------------ writes (recorded in a dry run)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = KINDS[body["kind"]]
        namespace = body["metadata"]["namespace"]
        if self._planned("create", kind, namespace, body["metadata"]["name"], body):
            return body
        if kind is CONFIGMAP:
            return self._dict(self._call("create", kind.plural, namespace,
                                         lambda: self.core.create_namespaced_config_map(namespace, body, **_T)))
        return self._dict(self._call(
            "create", kind.plural, namespace, lambda: self.custom.create_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, body, **_T)))

    def replace_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        """Update guarded by ``metadata.resourceVersion``: a concurrent writer makes it raise ``Conflict``."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        if self._planned("update", CONFIGMAP, namespace, name, body):
            return body
        return self._dict(self._call("update", "configmaps", namespace,
                                     lambda: self.core.replace_namespaced_config_map(name, namespace, body, **_T)))

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        if self._planned("patch", POD, namespace, name, patch):
            return patch
        return self._dict(self._call("patch", "pods", namespace, lambda: self.core.patch_namespaced_pod(
            name, namespace, patch, _content_type=MERGE_PATCH, **_T)))

    def evict(self, namespace: str, name: str) -> None:
        """``POST pods/NAME/eviction`` (policy/v1): the API server deletes the pod gracefully unless its
        PodDisruptionBudget allows no disruption now (429, a ``FaultRejected`` naming the budget)."""
        if self._planned("create", POD, namespace, f"{name}/eviction", None):
            return
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        self._call("create", "pods/eviction", namespace,
                   lambda: self.core.create_namespaced_pod_eviction(name, namespace, body, **_T))

    def delete(self, kind: Kind, namespace: str, name: str, resource_version: str | None = None,
               grace_period_s: int | None = None) -> bool:
        """Delete; False when it was already gone.  ``resource_version``: only that version (else ``Conflict``)."""
        if self._planned("delete", kind, namespace, name, None):
            return True
        options = client.V1DeleteOptions(
            grace_period_seconds=grace_period_s,
            preconditions=client.V1Preconditions(resource_version=resource_version) if resource_version else None)
        try:
            if kind is POD:
                self._call("delete", kind.plural, namespace,
                           lambda: self.core.delete_namespaced_pod(name, namespace, body=options, **_T))
            elif kind is CONFIGMAP:
                self._call("delete", kind.plural, namespace,
                           lambda: self.core.delete_namespaced_config_map(name, namespace, body=options, **_T))
            else:
                self._call("delete", kind.plural, namespace, lambda: self.custom.delete_namespaced_custom_object(
                    kind.group, kind.version, namespace, kind.plural, name, body=options, **_T))
        except NotFound:
            return False
        return True

    # ------------------------------------------------------------------ plumbing

    def _planned(self, verb: str, kind: Kind, namespace: str, name: str, body: dict[str, Any] | None) -> bool:
        if not self.dry_run:
            return False
        self.planned.append({"verb": verb, "apiVersion": kind.api_version, "kind": kind.kind,
                             "namespace": namespace, "name": name, **({"body": body} if body is not None else {})})
        return True

    @staticmethod
    def _dict(response: Any) -> dict[str, Any]:
        """The JSON body of a ``_preload_content=False`` response (custom-object calls return dicts already)."""
        if isinstance(response, dict):
            return response
        return dict(json.loads(response.data or b"{}"))

    def _call(self, verb: str, resource: str, namespace: str | None, request: Callable[[], T]) -> T:
        where = f" in namespace {namespace!r}" if namespace else ""
        try:
            return request()
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(_message(exc)) from None
            if exc.status == 409:
                raise Conflict(_message(exc)) from None
            error = FaultRejected if verb in ("create", "update", "patch", "delete") else TargetUnavailable
            if exc.status == 401:
                raise TargetUnavailable(f"kubernetes: the API server at {self.host} rejected the credentials "
                                        f"(401): {_message(exc)}") from None
            if exc.status == 403:
                raise error(f"kubernetes: forbidden to {verb} {resource}{where} (403): {_message(exc)}; "
                            "grant it (deploy/kubernetes/rbac.yaml)") from None
            raise error(f"kubernetes: {verb} {resource}{where} failed ({exc.status}): {_message(exc)}"
                        + _causes(exc)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TargetUnavailable(f"kubernetes: cannot reach the API server at {self.host}: "
                                    f"{_reason(exc)}") from None


_T: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT_S, "_preload_content": False}


def _message(exc: ApiException) -> str:
    try:
        return " ".join(str(json.loads(exc.body or "")["message"]).split())
    except (ValueError, KeyError, TypeError):
        return " ".join(str(exc.reason or exc.body or exc.status).split())


def _causes(exc: ApiException) -> str:
    """The Status' causes, when it gives them (an eviction's 429 names the disruption budget there)."""
    try:
        causes = json.loads(exc.body or "")["details"]["causes"]
        return "".join(f" ({' '.join(str(c['message']).split())})" for c in causes if c.get("message"))
    except (ValueError, KeyError, TypeError):
        return ""


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split())[:200]
