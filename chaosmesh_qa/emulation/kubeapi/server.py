"""The HTTPS server of the Kubernetes API emulation, run inside the sandbox supervisor (``up --kube-api``).

``KubeApi`` is a supervisor extension (``targets.local.supervisor.SupervisorExtension``), wired in by
``kubeapi.__main__``: the supervisor calls ``write_prometheus_rules`` before it starts Prometheus,
``start`` once the mesh is ready and ``close`` before it stops the mesh; it reaches the sandbox only
through ``sandbox.Sandbox``.  ``start`` issues a serving certificate from the mesh CA (IP SAN 127.0.0.1), writes a
random bearer token and ``<state-dir>/kubeconfig`` (both 0600), and serves on a free loopback
port.  Each request is authenticated, mapped to an RBAC verb and resource, appended to
``<state-dir>/kube-api-calls.jsonl`` and answered from ``workloads`` (live sandbox views),
``store`` (stored objects), ``apply`` (EnvoyFilters, AuthorizationPolicies and NetworkPolicies applied to
the sandbox, as istiod and a CNI apply them) and ``logs`` (``pods/log``,
text/plain); anything else is a Kubernetes ``Status`` naming what is not implemented.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml
from aiohttp import web

from chaosmesh_qa.emulation.kubeapi import eviction, istio_metrics, networkpolicy, resources
from chaosmesh_qa.emulation.kubeapi.apply import Applier
from chaosmesh_qa.emulation.kubeapi.logs import LogClock, choose_container, parse_options
from chaosmesh_qa.emulation.kubeapi.resources import Resource
from chaosmesh_qa.emulation.kubeapi.selectors import SelectorError, field_matcher, label_matcher
from chaosmesh_qa.emulation.kubeapi.status import ApiError, not_implemented, status_body
from chaosmesh_qa.emulation.kubeapi.store import ObjectStore
from chaosmesh_qa.emulation.kubeapi.tables import to_table
from chaosmesh_qa.emulation.kubeapi.workloads import Workloads
from chaosmesh_qa.mesh import meshconfig
from chaosmesh_qa.mesh.loader import raw_documents

if TYPE_CHECKING:
    from chaosmesh_qa.emulation.kubeapi.sandbox import Sandbox

log = logging.getLogger("chaosmesh_qa.kubeapi")
USER = "chaosmesh-qa"
POLL_S = 0.1  # how often the pod view is diffed for watches
MAX_WATCH_S = 1800.0
MERGE_PATCHES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
CONFIGMAPS = next(r for r in resources.RESOURCES if r.name == "configmaps")
NETWORKPOLICIES = "networkpolicies"
PODDISRUPTIONBUDGETS = "poddisruptionbudgets"
MESH_OBJECTS = ("virtualservices", "destinationrules", "gateways", "serviceentries", "workloadentries",
                "peerauthentications",
                "authorizationpolicies", NETWORKPOLICIES, PODDISRUPTIONBUDGETS, "httproutes")


class KubeApi:
    def __init__(self, sandbox: Sandbox, forbid: tuple[str, ...] = ()) -> None:
        self.sandbox = sandbox
        self.forbid = {tuple(rule.split(":", 1)) for rule in forbid}
        root = sandbox.state_dir
        self.kubeconfig = root / "kubeconfig"
        self.call_log = root / "kube-api-calls.jsonl"
        self.token_file = root / "kube-api" / "token"
        self.token = secrets.token_urlsafe(32)
        self.rv = 1
        self.workloads = Workloads(sandbox, self.next_rv)
        self.store = ObjectStore(root / "kube-api" / "objects.json", self.next_rv)
        self.applier = Applier(sandbox, self.workloads)
        self.logs = LogClock(sandbox)
        self.closing = False
        self._session: aiohttp.ClientSession | None = None  # pods/proxy: to the pods' stats listeners
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def write_prometheus_rules(self, directory: Path) -> None:
        """Istio's standard metric names as recording rules (``istio_metrics``): the model is loaded by now."""
        assert self.sandbox.model is not None
        istio_metrics.write_rules(self.sandbox.model, directory / "istio.yml")

    async def start(self) -> None:
        pki = self.sandbox.pki
        files = pki.identity("spiffe://cluster.local/ns/default/sa/kube-apiserver", "kubernetes.default.svc",
                                ip_addresses=("127.0.0.1",))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert, files.key)
        self._seed_mesh_objects()
        self.call_log.write_text("")
        _private(self.token_file, self.token)
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        self.port = self.sandbox.allocate_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        ca = Path(pki.ca_path).read_bytes()
        _private(self.kubeconfig, yaml.safe_dump(_kubeconfig(self.url, ca, self.token), sort_keys=False))
        self.workloads.refresh()
        self.logs.observe()
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        log.warning("kubernetes API emulation on %s (kubeconfig %s)", self.url, self.kubeconfig)

    async def close(self) -> None:
        self.closing = True  # ends every `follow` of a log
        if self._poller is not None:
            self._poller.cancel()
        await self.workloads.close()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        for path in (self.kubeconfig, self.token_file):
            path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        return {"kube_api_url": self.url if self.port else None, "kubeconfig": str(self.kubeconfig),
                "kube_api_calls": str(self.call_log), "kube_api_objects": self.applier.summary()}

    def pod_created(self, name: str) -> None:
        """A replacement pod exists and has not started: its NetworkPolicies are evaluated now, as a CNI programs a
        pod's rules before its containers run, so that no caller can see its endpoint before they are in force
        (the 100 ms poll alone could publish it first)."""
        self.workloads.refresh()
        self.applier.pods_changed(self.store)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            self.workloads.refresh()
            self.applier.pods_changed(self.store)  # a new or relabelled pod: the NetworkPolicies again
            self.logs.observe()

    def _seed_mesh_objects(self) -> None:
        """The mesh definition's own Istio objects (VS, DR, Gateway, ServiceEntry, WorkloadEntry, PeerAuthentication,
        AuthorizationPolicy) and Gateway API HTTPRoutes, its NetworkPolicies (the team's, enforced with the
        target's: ``apply``), its PodDisruptionBudgets (which evictions obey: ``eviction``) and the ``istio``
        ConfigMap of istio-system (the trust domain), read-only, from every document the mesh loader reads
        (subdirectories too, as ``kubectl apply -R`` does; a kustomization's as ``kubectl kustomize`` renders it); an
        object is known by its API group and kind (Istio's Gateway is not the Gateway API's)."""
        wanted = {(r.group, r.kind): r for r in resources.RESOURCES if r.name in MESH_OBJECTS}
        for doc in raw_documents(self.sandbox.mesh_dir):
            if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
                continue
            group = str(doc.get("apiVersion") or "").rpartition("/")[0]
            resource = wanted.get((group, str(doc.get("kind")))) or (
                CONFIGMAPS if meshconfig.is_mesh_config(doc) else None)  # istiod's MeshConfig
            if resource is not None and resource.name == NETWORKPOLICIES:
                try:  # stored as the API server stores it (defaults), enforced at the first poll
                    doc = {**networkpolicy.admit(doc)[0], "metadata": doc["metadata"]}
                except (networkpolicy.Undecodable, networkpolicy.Invalid):
                    continue  # the mesh loader names the problem (the local target refuses it)
            if resource is not None:
                self.store.seed(resource, doc)

    # ------------------------------------------------------------------ requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        entry: dict[str, Any] = {"ts": round(time.time(), 3)}
        try:
            if not secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {self.token}"):
                entry.update(verb=request.method.lower(), nonResourceURL=request.path)
                raise ApiError(401, "Unauthorized", "Unauthorized")
            response = await self._route(request, entry)
            entry["code"] = response.status
            return response
        except ApiError as exc:
            entry["code"] = exc.code
            entry.setdefault("error", exc.message)
            return web.json_response(exc.body(), status=exc.code)
        finally:
            with open(self.call_log, "a") as calls:
                calls.write(json.dumps(entry) + "\n")

    async def _route(self, request: web.Request, entry: dict[str, Any]) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if (parts[:1] == ["api"] and len(parts) > 2) or (parts[:1] == ["apis"] and len(parts) > 3):
            group, version, rest = ("", parts[1], parts[2:]) if parts[0] == "api" else (parts[1], parts[2], parts[3:])
            return await self._resource_request(request, entry, group, version, rest)
        entry.update(verb=request.method.lower(), nonResourceURL=request.path)
        if request.method != "GET":
            raise not_implemented(f"{request.method} {request.path}")
        document = self._discovery(parts)
        if document is None:
            raise not_implemented(f"GET {request.path}", code=404)
        return web.json_response(document)

    def _discovery(self, parts: list[str]) -> dict[str, Any] | None:
        if parts == ["version"]:
            return resources.SERVER_VERSION
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return {"status": "ok"}
        if parts == ["api"]:
            return resources.api_versions(f"127.0.0.1:{self.port}")
        if parts == ["apis"]:
            return resources.api_group_list()
        if len(parts) == 2 and parts[0] == "api":
            return resources.resource_list("", parts[1])
        if len(parts) == 2 and parts[0] == "apis":
            return resources.api_group(parts[1])
        if len(parts) == 3 and parts[0] == "apis":
            return resources.resource_list(parts[1], parts[2])
        return None

    async def _resource_request(self, request: web.Request, entry: dict[str, Any], group: str, version: str,
                                rest: list[str]) -> web.StreamResponse:
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        sub = "/".join(rest[2:]) or None
        proxy_path = "/".join(rest[3:]) if rest[2:3] == ["proxy"] else None
        if proxy_path is not None:  # pods/NAME[:PORT]/proxy/PATH: the subresource is "proxy"
            sub = "proxy"
        query = request.query
        watching = query.get("watch") in ("true", "1")
        verb = {"GET": "watch" if watching else ("get" if name else "list"), "POST": "create", "PUT": "update",
                "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}.get(request.method,
                                                                                       request.method.lower())
        entry.update(verb=verb, group=group, version=version, resource=plural, subresource=sub,
                     namespace=namespace, name=name)
        resource = resources.find(group, version, plural)
        gv = f"{group}/{version}" if group else version
        if resource is None:
            raise not_implemented(f"the resource {plural!r} in {gv}", code=404)
        what = f"{request.method} {plural}" + (f"/{sub}" if sub else "")
        served = resources.SUBRESOURCES.get((group, plural, sub), ()) if sub else resource.verbs
        if verb not in served:
            raise not_implemented(f"{what} (RBAC verb {verb!r})")
        rbac = f"{plural}/{sub}" if sub else plural
        if (verb, rbac) in self.forbid or ("*", rbac) in self.forbid or (verb, "*") in self.forbid:
            scope = f' in the namespace "{namespace}"' if namespace else ""
            raise ApiError(403, "Forbidden", f'{plural}{"." + group if group else ""} "{name or ""}" is forbidden: '
                                             f'User "{USER}" cannot {verb} resource "{rbac}" in API group '
                                             f'"{group}"{scope}', {"name": name or "", "group": group,
                                                                    "kind": plural})
        if resource.namespaced and namespace is None and verb not in ("list", "watch"):
            raise ApiError(404, "NotFound", f"{plural} must be addressed inside a namespace")
        if namespace is not None and plural != "namespaces" and namespace not in self.workloads.namespaces() \
                and verb in ("create",):
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})
        if verb == "watch":
            return await self._watch(request, resource, namespace, name)
        if sub == "log":
            return await self._pod_log(request, namespace or "", str(name))
        if sub == "proxy":
            return await self._pod_proxy(namespace or "", str(name), proxy_path or "")
        if sub == "eviction":
            return self._evict(namespace or "", str(name), entry)
        body = await self._body(request) if request.method in ("POST", "PUT", "PATCH", "DELETE") else None
        result = await self._dispatch(resource, verb, namespace, name, body, request, entry)
        if verb == "list":
            items = self._filter(request, result)
            result = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version(version),
                      "metadata": {"resourceVersion": str(self.rv)},
                      "items": [self._versioned(resource, version, i) for i in items]}
        elif isinstance(result, dict) and result.get("kind") == resource.kind:
            result = self._versioned(resource, version, result)
        if "as=Table" in request.headers.get("Accept", "") and verb in ("get", "list"):
            result = to_table(resource, result)
        response = web.json_response(result, status=201 if verb == "create" else 200)
        for warning in entry.pop("api_warnings", []):  # as the API server warns (kubectl prints them)
            response.headers.add("Warning", f'299 - "{warning}"')
        return response

    def _evict(self, namespace: str, name: str, entry: dict[str, Any]) -> web.StreamResponse:
        """``POST pods/NAME/eviction``: refused as the API server refuses it when the pod's PodDisruptionBudget
        allows no disruption (``eviction.refusal``), else the pod is deleted (killed at once here, as every pod
        delete of the emulation: graceful termination is not modelled)."""
        pod = self.workloads.get_pod(namespace, name)
        budgets = self.store.list(next(r for r in resources.RESOURCES if r.name == PODDISRUPTIONBUDGETS), namespace)
        eviction.refusal(pod, self.workloads.list_pods(namespace), budgets)
        self.workloads.delete_pod(namespace, name)
        entry["evicted"] = name
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "code": 201}, status=201)

    async def _dispatch(self, resource: Resource, verb: str, namespace: str | None, name: str | None, body: Any,
                        request: web.Request, entry: dict[str, Any]) -> Any:
        plural, wl = resource.name, self.workloads
        ns = namespace or ""
        if plural == "namespaces":
            return wl.namespace(name) if name else [wl.namespace(n) for n in wl.namespaces()]
        if plural == "nodes":
            return wl.node(name) if name else wl.nodes()
        if plural == "pods":
            if verb == "delete":
                grace = request.query.get("gracePeriodSeconds") or (body or {}).get("gracePeriodSeconds")
                entry["gracePeriodSeconds"] = None if grace is None else int(grace)
                return wl.delete_pod(ns, str(name))
            if verb == "patch":
                patched = wl.patch_pod(ns, str(name), self._merge_patch(request, body))
                self.applier.pods_relabelled(self.store)
                return patched
            return wl.get_pod(ns, str(name)) if name else wl.list_pods(namespace)
        if plural == "services":
            return wl.service(ns, str(name)) if name else wl.services(namespace)
        if plural == "endpoints":
            found = [e for e in wl.endpoints(namespace) if e["metadata"]["name"] == name] if name else None
            if name and not found:
                raise ApiError(404, "NotFound", f'endpoints "{name}" not found', {"name": name, "kind": "endpoints"})
            return found[0] if found else wl.endpoints(namespace)
        store = self.store
        if verb == "list":
            return [self.applier.decorate(resource, o) for o in store.list(resource, namespace)]
        if verb == "get":
            return self.applier.decorate(resource, store.get(resource, ns, str(name)))
        validation = request.query.get("fieldValidation") or "Warn"  # unknown fields: Strict, Warn or Ignore
        if verb == "create":
            return await self.applier.create(resource, ns, body, store, entry, validation)
        if verb == "update":
            return self.applier.update(resource, ns, str(name), body, store, entry, validation)
        if verb == "patch":
            return self.applier.patch(resource, ns, str(name), self._merge_patch(request, body), store, entry,
                                      validation)
        if verb == "delete":
            return await self.applier.delete(resource, ns, str(name), (body or {}).get("preconditions"), store, entry)
        raise not_implemented(f"{verb} {plural}")

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def _pod_proxy(self, namespace: str, name: str, path: str) -> web.StreamResponse:
        """``GET pods/NAME:PORT/proxy/PATH``: the sidecar's stats, as the API server relays a pod's port.

        Ports 15020 (pilot-agent's merged metrics) and 15090 (Envoy's own) are the pod's stats listener, which
        serves ``stats/prometheus`` and ``healthz/ready``; any other port answers as a port nothing listens on.
        """
        pod_name, _, port = name.partition(":")
        self.workloads.get_pod(namespace, pod_name)  # 404 as the API server's for an unknown pod
        pod = self.sandbox.pods.get(pod_name)
        if port not in ("15020", "15090") or pod is None or path not in ("stats/prometheus", "healthz/ready"):
            raise ApiError(503, "ServiceUnavailable", "error trying to reach service: dial tcp "
                                                      f"127.0.0.1:{port or 80}: connect: connection refused")
        url = f"http://127.0.0.1:{pod.spec.ports.stats}/{path}"
        try:
            async with self._http().get(url) as answer:
                body = await answer.read()
                return web.Response(body=body, status=answer.status, content_type="text/plain")
        except (aiohttp.ClientError, OSError) as exc:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {exc}") from None

    async def _pod_log(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        """``GET pods/NAME/log``: text/plain, as the API server relays the kubelet's answer (``logs``)."""
        options = parse_options(request.query, name, time.time())
        pod = self.workloads.get_pod(namespace, name)
        container = choose_container(pod, options.container)
        segment = self.logs.segment(pod, container, options.previous)
        data, offset = self.logs.read(segment, options)
        if not options.follow or segment.end is not None:
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(data)
        budget = None if options.limit_bytes is None else options.limit_bytes - len(data)
        async for chunk in self.logs.follow(name, container, segment, offset, options, budget,
                                            lambda: self.closing):
            await response.write(chunk)
        await response.write_eof()
        return response

    def _filter(self, request: web.Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            by_label = label_matcher(request.query.get("labelSelector"))
            by_field = field_matcher(request.query.get("fieldSelector"))
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        return [i for i in items if by_label(i) and by_field(i)]

    @staticmethod
    def _versioned(resource: Resource, version: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "apiVersion": resource.api_version(version), "kind": resource.kind}

    @staticmethod
    async def _body(request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        text = await request.text()
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError:
                raise ApiError(400, "BadRequest", "the request body is neither JSON nor YAML") from None

    @staticmethod
    def _merge_patch(request: web.Request, body: Any) -> Any:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in MERGE_PATCHES:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the chaosmesh-qa Kubernetes API emulation does not implement {content_type or 'this'} "
                           f"patches (use {' or '.join(MERGE_PATCHES)})")
        return body

    async def _watch(self, request: web.Request, resource: Resource, namespace: str | None,
                     name: str | None) -> web.StreamResponse:
        if name is not None:
            raise not_implemented(f"watching a single {resource.singular} by URL (use fieldSelector metadata.name)")
        by_label = label_matcher(request.query.get("labelSelector"))
        by_field = field_matcher(request.query.get("fieldSelector"))
        timeout = min(float(request.query.get("timeoutSeconds") or MAX_WATCH_S), MAX_WATCH_S)
        since = request.query.get("resourceVersion") or "0"
        queue = self.workloads.subscribe()
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            last = int(since) if since.isdigit() else 0
            backlog: list[dict[str, Any]]
            if last == 0:  # no resourceVersion: the current state first, as synthetic ADDED events
                backlog = [{"type": "ADDED", "object": pod} for pod in self.workloads.list_pods(namespace)]
            else:
                backlog = [e for e in self.workloads.history if int(e["object"]["metadata"]["resourceVersion"]) > last]
                if self.workloads.trimmed() and last < self.workloads.oldest_rv():
                    gone = status_body(410, "Expired", f"too old resource version: {last}")
                    await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
                    backlog = []
                    timeout = 0
            last = max([last, *(int(e["object"]["metadata"]["resourceVersion"]) for e in backlog)])
            for event in backlog:
                obj = event["object"]
                if namespace in (None, obj["metadata"]["namespace"]) and by_label(obj) and by_field(obj):
                    await response.write(json.dumps(event).encode() + b"\n")
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                obj = event["object"]
                if int(obj["metadata"]["resourceVersion"]) <= last or not (
                        namespace in (None, obj["metadata"]["namespace"]) and by_label(obj) and by_field(obj)):
                    continue
                await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
            return response
        finally:
            self.workloads.unsubscribe(queue)


def _kubeconfig(url: str, ca: bytes, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "chaosmesh-qa",
            "clusters": [{"name": "chaosmesh-qa", "cluster": {
                "server": url, "certificate-authority-data": base64.b64encode(ca).decode()}}],
            "users": [{"name": USER, "user": {"token": token}}],
            "contexts": [{"name": "chaosmesh-qa", "context": {"cluster": "chaosmesh-qa", "user": USER,
                                                               "namespace": "default"}}],
            "preferences": {}}


def _private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)

