"""A Kubernetes API emulation served by the sandbox supervisor (``chaosmesh-qa up --kube-api``), for tests
and rehearsals of the Kubernetes target against real Envoy behaviour.  See docs/explanation/kube-api-emulation.md.

``server.KubeApi`` is a supervisor extension; ``__main__`` is the supervisor process with it wired in,
which ``up --kube-api`` starts (``supervisor_entry``).  It reaches the sandbox only through
``sandbox.Sandbox``; the other modules are its parts.
"""

from chaosmesh_qa.emulation.kubeapi.resources import RESOURCES, SUBRESOURCES

RBAC_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def parse_forbid(rule: str) -> str:
    """Check one ``VERB:RESOURCE`` test-hook rule (``up --kube-api-forbid``); the rule, or ValueError."""
    verb, _, resource = rule.partition(":")
    names = {r.name for r in RESOURCES} | {f"{parent}/{sub}" for _, parent, sub in SUBRESOURCES}
    if verb not in (*RBAC_VERBS, "*") or resource not in (*names, "*"):
        raise ValueError(f"{rule!r} is not VERB:RESOURCE (verbs: {', '.join(RBAC_VERBS)} or *; "
                         f"resources: {', '.join(sorted(names))} or *)")
    return rule


def supervisor_entry(forbid: tuple[str, ...] = ()) -> list[str]:
    """The arguments after ``python`` that start a sandbox supervisor also serving the emulation, ``forbid``
    rules answered 403 (for ``targets.local.sandbox.up``'s ``entry``)."""
    return ["-m", __name__, *(f"--forbid={parse_forbid(rule)}" for rule in forbid)]
