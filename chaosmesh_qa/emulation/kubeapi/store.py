"""The API emulation's object store: ConfigMaps, Istio and NetworkPolicy objects, in memory and on disk.

``server`` calls ``create`` / ``get`` / ``list`` / ``update`` / ``patch`` / ``delete`` for every
resource that is not a live view of the sandbox (pods, services, endpoints and namespaces are
built by ``workloads``).  Objects get a uid, a creationTimestamp and a resourceVersion from the
server's single counter; updates and deletes honour resourceVersion preconditions (409 Conflict),
so two reapers racing on one lease behave as on a real API server.  Every change is written to
``<state-dir>/kube-api/objects.json`` (there for the run, for post-mortems; never read back).
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaosmesh_qa.emulation.kubeapi.resources import Resource
from chaosmesh_qa.emulation.kubeapi.status import ApiError, invalid, not_found
from chaosmesh_qa.files import atomic_write_json

Key = tuple[str, str, str]  # (resource plural, namespace, name)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge patch is read the same way: maps merge, lists replace)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ObjectStore:
    def __init__(self, path: Path, next_rv: Callable[[], int]) -> None:
        self.path = path
        self.next_rv = next_rv
        self.objects: dict[Key, dict[str, Any]] = {}
        self.read_only: set[Key] = set()

    def seed(self, resource: Resource, obj: dict[str, Any]) -> None:
        """A read-only object of the mesh definition (VirtualService, DestinationRule)."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        key = (resource.name, meta["namespace"], meta["name"])
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        self._stamp(obj)
        self.objects[key] = obj
        self.read_only.add(key)

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((resource.name, namespace, name))
        if obj is None:
            raise not_found(resource.name, name, resource.group)
        return obj

    def list(self, resource: Resource, namespace: str | None) -> list[dict[str, Any]]:
        return [obj for (plural, ns, _), obj in sorted(self.objects.items())
                if plural == resource.name and (namespace is None or ns == namespace)]

    def create(self, resource: Resource, namespace: str, body: Any) -> dict[str, Any]:
        obj = self._check_body(resource, body, namespace)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)[:5]}"
        name = meta.get("name")
        if not name:
            raise invalid(resource.kind, "", "metadata.name: Required value: name or generateName is required")
        if (resource.name, namespace, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f'{resource.name} "{name}" already exists',
                           {"name": name, "kind": resource.name})
        meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        self._stamp(obj)
        self.objects[(resource.name, namespace, name)] = obj
        self._save()
        return obj

    def update(self, resource: Resource, namespace: str, name: str, body: Any) -> dict[str, Any]:
        current = self._writable(resource, namespace, name)
        obj = self._check_body(resource, body, namespace)
        wanted = obj["metadata"].get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise self._conflict(resource, name)
        if obj["metadata"].get("name", name) != name:
            raise invalid(resource.kind, name, "metadata.name: the name in the body differs from the URL")
        for field in ("uid", "creationTimestamp", "namespace", "name"):
            obj["metadata"][field] = current["metadata"][field]
        self._stamp(obj)
        self.objects[(resource.name, namespace, name)] = obj
        self._save()
        return obj

    def patch(self, resource: Resource, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        current = self._writable(resource, namespace, name)
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise self._conflict(resource, name)
        obj = merge_patch(current, patch)
        for field in ("uid", "creationTimestamp", "namespace", "name"):
            obj["metadata"][field] = current["metadata"][field]
        self._stamp(obj)
        self.objects[(resource.name, namespace, name)] = obj
        self._save()
        return obj

    def delete(self, resource: Resource, namespace: str, name: str,
               preconditions: dict[str, Any] | None = None) -> dict[str, Any]:
        current = self._writable(resource, namespace, name)
        preconditions = preconditions or {}
        if (preconditions.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"])
                or preconditions.get("uid") not in (None, current["metadata"]["uid"])):
            raise self._conflict(resource, name)
        del self.objects[(resource.name, namespace, name)]
        self._save()
        return current

    # ------------------------------------------------------------------ helpers

    def _writable(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        current = self.get(resource, namespace, name)
        if (resource.name, namespace, name) in self.read_only:
            raise ApiError(405, "MethodNotAllowed",
                           f"{resource.name} {namespace}/{name} comes from the sandbox's mesh definition and is "
                           f"read-only in the chaosmesh-qa Kubernetes API emulation")
        return current

    def _check_body(self, resource: Resource, body: Any, namespace: str) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", f"the request body is not a {resource.kind} object")
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {})
        if obj.get("kind", resource.kind) != resource.kind:
            raise ApiError(400, "BadRequest", f"kind {obj.get('kind')!r} sent to the {resource.name} endpoint")
        obj["kind"] = resource.kind
        obj.setdefault("apiVersion", resource.api_version(resource.versions[0]))
        if obj["metadata"].get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                                              "namespace sent on the request")
        return obj

    def _stamp(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(self.next_rv())

    @staticmethod
    def _conflict(resource: Resource, name: str) -> ApiError:
        return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource.name} "{name}": the object '
                                         f"has been modified; please apply your changes to the latest version "
                                         f"and try again", {"name": name, "kind": resource.name})

    def _save(self) -> None:
        kept = [obj for key, obj in sorted(self.objects.items()) if key not in self.read_only]
        atomic_write_json(self.path, kept, mode=0o600)
