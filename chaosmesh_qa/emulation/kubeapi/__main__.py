"""``python -m chaosmesh_qa.emulation.kubeapi [--forbid VERB:RESOURCE ...] SUPERVISOR-OPTIONS``: the sandbox
supervisor (``targets.local.supervisor``) with the Kubernetes API emulation as its extension.

``chaosmesh-qa up --kube-api`` starts this in place of ``python -m chaosmesh_qa.targets.local.supervisor``
(``supervisor_entry``): the wiring lives here, above the targets, so the local target never imports the
emulation.  Handing the supervisor in as a ``Sandbox`` is where mypy checks that it is one.
"""

from __future__ import annotations

import argparse

from chaosmesh_qa.emulation.kubeapi import parse_forbid
from chaosmesh_qa.emulation.kubeapi.sandbox import Sandbox
from chaosmesh_qa.emulation.kubeapi.server import KubeApi
from chaosmesh_qa.targets.local import supervisor
from chaosmesh_qa.targets.local.supervisor import ExtensionFactory


def kube_api(forbid: tuple[str, ...]) -> ExtensionFactory:
    def extension(sandbox: Sandbox) -> KubeApi:
        return KubeApi(sandbox, forbid)

    return extension


def main() -> None:
    parser = argparse.ArgumentParser(description="chaosmesh-qa sandbox supervisor serving the Kubernetes API "
                                                 "emulation (started by `chaosmesh-qa up --kube-api`)")
    parser.add_argument("--forbid", action="append", default=[], type=parse_forbid, metavar="VERB:RESOURCE",
                        help="answer this call 403, as an RBAC denial would")
    args, rest = parser.parse_known_args()
    supervisor.main([kube_api(tuple(args.forbid))], rest)


if __name__ == "__main__":
    main()
