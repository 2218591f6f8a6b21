"""Live Kubernetes views of the sandbox: namespaces, pods, services and endpoints, and pod watch events.

``server`` reads these for every request on those resources.  Pods are the supervisor's pods dressed as Istio
pods (the labels of the mesh's manifests as they are, plus what their controller adds and Istio's
canonical-service labels; a ReplicaSet owner named after the manifest's Deployment, or the manifest's StatefulSet,
whose pods are named by ordinal; a uid per pod object; containers ``app`` and
``istio-proxy``, the default-container annotations of Istio's injector, ``podIP`` 127.0.0.1); Services carry the
manifest's selector (a ``Mesh`` document's service selects ``app: <name>``); ``refresh`` diffs them against the
last view and hands ADDED / MODIFIED / DELETED events to every open watch.  Deleting a pod kills it (SIGKILL of
app and sidecar, as grace period 0) and starts a replacement under a new name, as a ReplicaSet would (a
StatefulSet's under the same name),
``REPLACEMENT_START_DELAY_S`` later (a kubelet does not start a pod's containers at once), its processes at
niceness ``STARTING_NICENESS`` until it is Ready (on a cluster a starting pod is held to its own CPU share and
usually runs on another node; here its ~0.6 CPU-seconds of start-up would otherwise come out of the 2 cores
serving the traffic); patches may change labels and annotations only (kept next to the pod).

A ``MESH_INTERNAL`` ServiceEntry's workload entries (VMs, ``mesh.workloadentries``) run as pods in the sandbox but
are no Kubernetes objects on a cluster: no Pod, no Service, no Endpoints is served for them (``on_vms``); the API
shows them as the ServiceEntry and WorkloadEntries of the mesh directory (``server``), and istiod's EnvoyFilters
and AuthorizationPolicies still reach their sidecars by the entries' labels.

Nodes: as on a cluster, a pod's zone is its node's.  One Node per locality of the mesh's pods
(``chaosmesh-qa-sandbox-<region>-<zone>[-<subzone>]``, labelled ``topology.kubernetes.io/region``/``zone`` and
``topology.istio.io/subzone`` as a cloud provider labels its nodes), and ``chaosmesh-qa-sandbox`` for pods
without one; each pod's ``spec.nodeName`` is the node of its sidecar's locality, and its own labels carry no
topology label unless its template gives one (which istiod ignores, except ``istio-locality``).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chaosmesh_qa.emulation.kubeapi.status import ApiError, invalid, not_found
from chaosmesh_qa.emulation.kubeapi.store import merge_patch
from chaosmesh_qa.mesh.identity import (
    CANONICAL_NAME_LABEL,
    CANONICAL_REVISION_LABEL,
    REVISION_LABELS,
    canonical_revision,
    canonical_service,
)
from chaosmesh_qa.mesh.localities import TOPOLOGY_LABELS
from chaosmesh_qa.targets.local.pods import SERVING_STATES, Pod

if TYPE_CHECKING:
    from chaosmesh_qa.emulation.kubeapi.sandbox import Sandbox

NODE = "chaosmesh-qa-sandbox"
POD_IP = "127.0.0.1"  # every pod of the sandbox listens on loopback, on its own ports
MAX_QUEUED_EVENTS = 10000
# From the delete to the replacement's containers starting (docs/explanation/kube-api-emulation.md): a lower bound of
# what a kubelet takes (sandbox creation, istio-init, image checks); the pod is Ready ~1 s after that here.
REPLACEMENT_START_DELAY_S = 2.0
STARTING_NICENESS = 10


def _set_niceness(pid: int, value: int) -> bool:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, value)
    except OSError:  # gone already, or not allowed to raise the priority again
        return False
    return True


def _ts(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "chaosmesh-qa:" + "/".join(parts)))


def template_hash(service: str, version: str) -> str:
    return hashlib.sha256(f"{service}/{version}".encode()).hexdigest()[:10]


class Workloads:
    def __init__(self, sandbox: Sandbox, next_rv: Callable[[], int]) -> None:
        self.sandbox = sandbox
        self.next_rv = next_rv
        self.pods: dict[str, dict[str, Any]] = {}  # name -> last published pod object
        self.overlay: dict[str, dict[str, dict[str, str]]] = {}  # pod -> {"labels": ..., "annotations": ...}
        self.watchers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_QUEUED_EVENTS)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.replacements: dict[str, str] = {}  # killed pod -> replacement pod (once started)

    # ------------------------------------------------------------------ namespaces and services

    def namespaces(self) -> list[str]:
        model = self.sandbox.model
        found = {"default", "istio-system", *(s.namespace for s in model.services.values())} if model else set()
        found |= {model.ingress_gateway.namespace, model.root_namespace} if model else set()  # Helm gateway, root
        return sorted(found)

    def namespace(self, name: str) -> dict[str, Any]:
        if name not in self.namespaces():
            raise not_found("namespaces", name)
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": _uid("ns", name), "resourceVersion": "1",
                             "creationTimestamp": _ts(self.sandbox.started_at),
                             "labels": {"kubernetes.io/metadata.name": name,
                                        **({"istio-injection": "enabled"} if name != "istio-system" else {})}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def services(self, namespace: str | None) -> list[dict[str, Any]]:
        model = self.sandbox.model
        if model is None:
            return []
        found = [self._service(name) for name, svc in sorted(model.services.items())
                 if namespace in (None, svc.namespace) and not self.on_vms(name)]
        # per-version Services an HTTPRoute names (reviews-v1): they select some of another Service's pods
        found += [self._service(name) for name, view in sorted(model.service_views.items())
                  if namespace in (None, view.namespace)]
        return found

    def _service(self, name: str) -> dict[str, Any]:
        model = self.sandbox.model
        assert model is not None
        view = model.service_views.get(name)
        svc = model.services[view.parent if view is not None else name]
        selector, port = (view.selector, view.port) if view is not None else (svc.pod_selector, svc.port)
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": svc.namespace, "uid": _uid("svc", svc.namespace, name),
                             "resourceVersion": "1", "creationTimestamp": _ts(self.sandbox.started_at),
                             "labels": {"app": name, "service": name} if not svc.selector else {}},
                "spec": {"selector": selector, "type": "ClusterIP", "clusterIP": POD_IP,
                         "ports": [{"name": "http", "port": port, "targetPort": svc.pod_port, "protocol": "TCP"}]},
                "status": {"loadBalancer": {}}}

    def on_vms(self, service: str) -> bool:
        """Whether ``service`` is a MESH_INTERNAL ServiceEntry's, run by WorkloadEntries (VMs): no Kubernetes
        object on a cluster."""
        model = self.sandbox.model
        svc = model.services.get(service) if model is not None else None
        return svc is not None and all(v.workload_kind == "WorkloadEntry" for v in svc.versions)

    def _serves(self, service: str, pod: Any) -> bool:
        """Whether ``pod`` is an endpoint of ``service`` (a per-version Service: its parent's pods it selects)."""
        model = self.sandbox.model
        view = model.service_views.get(service) if model is not None else None
        if view is None or model is None:
            return bool(pod.spec.service == service)
        labels = model.workload_labels(view.parent, pod.spec.version)
        return bool(pod.spec.service == view.parent and all(labels.get(k) == v for k, v in view.selector.items()))

    def service(self, namespace: str, name: str) -> dict[str, Any]:
        found = [s for s in self.services(namespace) if s["metadata"]["name"] == name]
        if not found:
            raise not_found("services", name)
        return found[0]

    def nodes(self) -> list[dict[str, Any]]:
        """One Node per locality of the mesh's pods (and the node of pods without one)."""
        model = self.sandbox.model
        assert model is not None
        where = {v.locality(i) for s in model.services.values() for v in s.versions for i in range(max(v.replicas, 1))}
        where |= {pod.spec.locality for pod in self.sandbox.pods.values()}
        return [self._node(locality) for locality in sorted(where | {""})]

    def node(self, name: str) -> dict[str, Any]:
        found = [n for n in self.nodes() if n["metadata"]["name"] == name]
        if not found:
            raise not_found("nodes", name)
        return found[0]

    def _node(self, locality: str) -> dict[str, Any]:
        parts = ([*locality.split("/"), "", "", ""])[:3]
        labels = {key: value for key, value in zip(TOPOLOGY_LABELS, parts, strict=True) if value}
        name = node_name(locality)
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "uid": _uid("node", name), "resourceVersion": "1",
                             "creationTimestamp": _ts(0),
                             "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **labels}},
                "spec": {}, "status": {"addresses": [{"type": "InternalIP", "address": POD_IP}],
                                       "conditions": [{"type": "Ready", "status": "True"}]}}

    def endpoints(self, namespace: str | None) -> list[dict[str, Any]]:
        """One subset per pod: each pod's sidecar listens on its own inbound port of 127.0.0.1."""
        self.refresh()
        result = []
        for service in self.services(namespace):
            meta = service["metadata"]
            pods = sorted((p for p in self.sandbox.pods.values() if self._serves(meta["name"], p)),
                          key=lambda p: p.name)
            subsets = []
            for pod in pods:
                address = {"ip": POD_IP, "nodeName": node_name(pod.spec.locality), "targetRef": {
                    "kind": "Pod", "namespace": meta["namespace"], "name": pod.name, "uid": _uid("pod", pod.name)}}
                ready = pod.state in SERVING_STATES
                subsets.append({"addresses" if ready else "notReadyAddresses": [address],
                                "ports": [{"name": "http", "port": pod.spec.ports.inbound, "protocol": "TCP"}]})
            result.append({"apiVersion": "v1", "kind": "Endpoints",
                           "metadata": {**{k: meta[k] for k in ("name", "namespace", "creationTimestamp", "labels")},
                                        "uid": _uid("ep", meta["namespace"], meta["name"]),
                                        "resourceVersion": max((self.pods.get(p.name, {}).get("metadata", {})
                                                                .get("resourceVersion", "1")
                                                                for p in pods), key=int, default="1")},
                           "subsets": subsets})
        return result

    # ------------------------------------------------------------------ pods

    def refresh(self) -> None:
        """Diff the supervisor's pods against the last view; publish watch events for what changed."""
        current = {name: self._pod(pod) for name, pod in sorted(self.sandbox.pods.items())
                   if not self.on_vms(pod.spec.service)}
        for name in [n for n in self.pods if n not in current]:
            gone = self.pods.pop(name)
            self.overlay.pop(name, None)
            gone = copy.deepcopy(gone)
            gone["metadata"]["resourceVersion"] = str(self.next_rv())
            gone["metadata"].setdefault("deletionTimestamp", _ts(dt.datetime.now(dt.UTC).timestamp()))
            self._publish("DELETED", gone)
        for name, obj in current.items():
            before = self.pods.get(name)
            if before is not None and _same(before, obj):
                continue
            obj["metadata"]["resourceVersion"] = str(self.next_rv())
            self.pods[name] = obj
            self._publish("ADDED" if before is None else "MODIFIED", obj)

    def list_pods(self, namespace: str | None) -> list[dict[str, Any]]:
        self.refresh()
        return [p for p in self.pods.values() if namespace in (None, p["metadata"]["namespace"])]

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        self.refresh()
        pod = self.pods.get(name)
        if pod is None or pod["metadata"]["namespace"] != namespace:
            raise not_found("pods", name)
        return pod

    def delete_pod(self, namespace: str, name: str) -> dict[str, Any]:
        obj = copy.deepcopy(self.get_pod(namespace, name))
        if self.sandbox.state != "ready":
            raise ApiError(503, "ServiceUnavailable", f"the sandbox is {self.sandbox.state}")
        dead = self.sandbox.kill_pod(name)
        task = asyncio.get_running_loop().create_task(self._replace(dead))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        obj["metadata"]["deletionTimestamp"] = _ts(dt.datetime.now(dt.UTC).timestamp())
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        self.refresh()
        return obj

    async def _replace(self, dead: Pod) -> None:
        await asyncio.sleep(REPLACEMENT_START_DELAY_S)
        niced: set[int] = set()
        lowering = asyncio.get_running_loop().create_task(self._lower_starting(set(self.sandbox.pods), niced))
        try:
            pod = await self.sandbox.replace_pod(dead)
        finally:
            lowering.cancel()
        for pid in niced:  # Ready: back to the priority of every other pod (needs CAP_SYS_NICE; else stays)
            _set_niceness(pid, 0)
        if pod is not None:
            self.replacements[dead.name] = pod.name
        self.refresh()

    async def _lower_starting(self, before: set[str], niced: set[int]) -> None:
        """Lower the CPU priority of the replacement's processes as soon as they exist (until cancelled)."""
        while True:
            for name, pod in list(self.sandbox.pods.items()):
                for process in (pod.envoy, pod.app) if name not in before else ():
                    if process is not None and process.pid not in niced and _set_niceness(process.pid,
                                                                                          STARTING_NICENESS):
                        niced.add(process.pid)
            await asyncio.sleep(0.005)

    def patch_pod(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        self.get_pod(namespace, name)
        if not isinstance(patch, dict) or set(patch) - {"metadata", "apiVersion", "kind"} \
                or set(patch.get("metadata") or {}) - {"labels", "annotations", "resourceVersion"}:
            raise invalid("Pod", name, "the chaosmesh-qa Kubernetes API emulation patches only "
                                       "metadata.labels and metadata.annotations of pods")
        overlay = self.overlay.setdefault(name, {"labels": {}, "annotations": {}})
        for field in ("labels", "annotations"):
            changes = (patch.get("metadata") or {}).get(field) or {}
            fixed = self._identity_labels(self.sandbox.pods[name])
            if field == "labels" and any(k in fixed for k in changes):
                raise invalid("Pod", name, f"metadata.labels: {', '.join(sorted(fixed))} select the pod into its "
                                           "Service and version, and cannot be patched in the emulation")
            base = self._base_meta(self.sandbox.pods[name])[field]
            merged = merge_patch({**base, **overlay[field]}, changes)
            removed = [k for k in base if k not in merged]
            if removed:
                raise invalid("Pod", name, f"metadata.{field}: {', '.join(removed)} belong to the sandbox pod "
                                           f"and cannot be removed")
            overlay[field] = {k: str(v) for k, v in merged.items() if base.get(k) != v}
        self.refresh()
        return self.pods[name]

    def _identity_labels(self, pod: Pod) -> set[str]:
        """The labels the emulation cannot let a patch change: its Service's selector, the labels its version is
        named by, the ReplicaSet's hash."""
        model = self.sandbox.model
        assert model is not None
        selector = model.services[pod.spec.service].pod_selector
        return {*selector, *(k for k in REVISION_LABELS if k in pod.spec.labels), *self._controller_labels(pod)}

    def pod_labels(self, name: str) -> dict[str, str]:
        self.refresh()
        return dict(self.pods[name]["metadata"]["labels"]) if name in self.pods else {}

    def _base_meta(self, pod: Pod) -> dict[str, dict[str, str]]:
        """The pod's labels as its template gives them, and what the ReplicaSet and Istio's injector add."""
        spec = pod.spec
        workload = self._workload(pod)
        labels = {**spec.labels, **self._controller_labels(pod), "security.istio.io/tlsMode": "istio",
                  CANONICAL_NAME_LABEL: canonical_service(spec.labels, workload),
                  CANONICAL_REVISION_LABEL: canonical_revision(spec.labels)}
        annotations = {"chaosmesh-qa.io/sandbox-ports": json.dumps(
            {k: v for k, v in vars(spec.ports).items() if v}, sort_keys=True),
            # what Istio's sidecar injector adds: kubectl logs/exec without -c pick the app, not istio-proxy
            "kubectl.kubernetes.io/default-container": "app", "kubectl.kubernetes.io/default-logs-container": "app"}
        return {"labels": labels, "annotations": annotations}

    def _stateful(self, pod: Pod) -> bool:
        model = self.sandbox.model
        assert model is not None
        return model.services[pod.spec.service].version(pod.spec.version).workload_kind == "StatefulSet"

    def _controller_labels(self, pod: Pod) -> dict[str, str]:
        """What the pod's controller adds to its template's labels: a ReplicaSet its template hash; a StatefulSet
        its revision, the pod's name and (Kubernetes 1.28+) its ordinal."""
        spec = pod.spec
        if not self._stateful(pod):
            return {"pod-template-hash": template_hash(spec.service, spec.version)}
        workload = self._workload(pod)
        return {"controller-revision-hash": f"{workload}-{template_hash(spec.service, spec.version)}",
                "statefulset.kubernetes.io/pod-name": pod.name,
                "apps.kubernetes.io/pod-index": pod.name.rsplit("-", 1)[-1]}

    def _owner(self, pod: Pod, namespace: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The pod's controller reference (a ReplicaSet named after its Deployment, or its StatefulSet) and the
        metadata a controller gives the pods it names (a ReplicaSet's ``generateName``)."""
        workload = self._workload(pod)
        if self._stateful(pod):
            kind, name, named = "StatefulSet", workload, {}
        else:
            kind = "ReplicaSet"
            name = f"{workload}-{template_hash(pod.spec.service, pod.spec.version)}"
            named = {"generateName": f"{name}-"}
        return ({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": _uid(kind, namespace, name),
                 "controller": True, "blockOwnerDeletion": True}, named)

    def _workload(self, pod: Pod) -> str:
        """The Deployment that runs ``pod`` (the manifest's, or ``<service>-<version>``)."""
        model = self.sandbox.model
        assert model is not None
        return model.services[pod.spec.service].workload_name(pod.spec.version)

    def _pod(self, pod: Pod) -> dict[str, Any]:
        model = self.sandbox.model
        assert model is not None
        svc = model.services[pod.spec.service]
        base, overlay = self._base_meta(pod), self.overlay.get(pod.name, {})
        owner, named = self._owner(pod, svc.namespace)
        phase = "Pending" if pod.state == "starting" else "Running"
        ready = pod.state == "ready"
        app_up = pod.app is not None and pod.app.returncode is None
        proxy_up = pod.envoy is not None and pod.envoy.returncode is None

        def container(name: str, up: bool, restarts: int) -> dict[str, Any]:
            state = {"running": {"startedAt": _ts(pod.started_at)}} if up else {
                "waiting": {"reason": "ContainerCreating" if pod.state == "starting" else "CrashLoopBackOff"}}
            return {"name": name, "ready": up and pod.state in SERVING_STATES, "restartCount": restarts,
                    "state": state, "image": f"chaosmesh-qa/{name}", "imageID": "", "started": up}

        conditions = [{"type": t, "status": "True" if ok else "False", "lastProbeTime": None,
                       "lastTransitionTime": _ts(pod.started_at)}
                      for t, ok in (("Initialized", True), ("Ready", ready), ("ContainersReady", ready),
                                    ("PodScheduled", True))]
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                # a new uid per pod object: a StatefulSet's replacement has its predecessor's name, not its uid
                "name": pod.name, "namespace": svc.namespace, "uid": _uid("pod", pod.name, repr(pod.started_at)),
                **named, "creationTimestamp": _ts(pod.started_at),
                "labels": {**base["labels"], **overlay.get("labels", {})},
                "annotations": {**base["annotations"], **overlay.get("annotations", {})},
                "ownerReferences": [owner],
            },
            "spec": {"serviceAccountName": svc.service_account, "serviceAccount": svc.service_account,
                     "nodeName": node_name(pod.spec.locality), "restartPolicy": "Always",
                     "containers": [{"name": "app", "image": "chaosmesh-qa/app",
                                     "ports": [{"name": "http", "containerPort": svc.pod_port, "protocol": "TCP"}]},
                                    {"name": "istio-proxy", "image": "chaosmesh-qa/istio-proxy"}]},
            "status": {"phase": phase, "conditions": conditions, "hostIP": POD_IP, "podIP": POD_IP,
                       "podIPs": [{"ip": POD_IP}], "startTime": _ts(pod.started_at), "qosClass": "BestEffort",
                       "containerStatuses": [container("app", app_up, pod.restarts),
                                             container("istio-proxy", proxy_up, 0)]},
        }

    # ------------------------------------------------------------------ watch plumbing

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_QUEUED_EVENTS)
        self.watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.watchers.discard(queue)

    def trimmed(self) -> bool:
        return len(self.history) == self.history.maxlen

    def oldest_rv(self) -> int:
        return int(self.history[0]["object"]["metadata"]["resourceVersion"]) if self.history else 0

    def _publish(self, kind: str, obj: dict[str, Any]) -> None:
        self.history.append({"type": kind, "object": copy.deepcopy(obj)})
        for queue in list(self.watchers):
            if queue.full():  # a watcher that stopped reading: drop it, as the API server would
                self.watchers.discard(queue)
                continue
            queue.put_nowait({"type": kind, "object": copy.deepcopy(obj)})

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def node_name(locality: str) -> str:
    """The Node a pod in ``locality`` (``region/zone/subzone``; '' for none) runs on."""
    parts = [p for p in locality.split("/") if p]
    return "-".join([NODE, *(p.lower().replace("_", "-").replace(".", "-") for p in parts)])


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = {**a, "metadata": {k: v for k, v in a["metadata"].items() if k != "resourceVersion"}}
    return strip == b
