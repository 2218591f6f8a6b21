"""The Kubernetes + Istio target: faults as Istio/Kubernetes objects, leases as ConfigMaps, reaped by ``reap``.

``chaosmesh_qa.targets.get_target`` builds ``KubernetesTarget`` (target.py) from ``KubeSettings``
(settings.py); docs/reference/kubernetes-target.md describes the configuration, RBAC and every fault.
"""
