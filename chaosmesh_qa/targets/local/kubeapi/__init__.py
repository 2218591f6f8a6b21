"""A Kubernetes API emulation served by the sandbox supervisor (``chaosmesh-qa up --kube-api``), for tests
and rehearsals of the Kubernetes target against real Envoy behaviour.  See docs/kube-api-emulation.md.

``server.KubeApi`` is started by the supervisor; the other modules are its parts.
"""

from chaosmesh_qa.targets.local.kubeapi.resources import RESOURCES

RBAC_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def parse_forbid(rule: str) -> str:
    """Check one ``VERB:RESOURCE`` test-hook rule (``up --kube-api-forbid``); the rule, or ValueError."""
    verb, _, resource = rule.partition(":")
    names = {r.name for r in RESOURCES}
    if verb not in (*RBAC_VERBS, "*") or resource not in (*names, "*"):
        raise ValueError(f"{rule!r} is not VERB:RESOURCE (verbs: {', '.join(RBAC_VERBS)} or *; "
                         f"resources: {', '.join(sorted(names))} or *)")
    return rule
