"""Test doubles of what chaosmesh-qa tests against, for tests and rehearsals: today a Kubernetes cluster
(``kubeapi``, served next to the embedded mesh by ``chaosmesh-qa up --kube-api``).

No target imports this package: a target talks to the real thing.  The emulation sits above the
targets (it dresses the local sandbox as a cluster and reaches it through ``kubeapi.sandbox.Sandbox``),
beside the CLI, which wires it in (see ``kubeapi.__main__``).  ``make lint`` enforces both
(``[tool.importlinter]`` in pyproject.toml).
"""
