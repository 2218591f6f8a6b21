"""Helpers shared by the test modules and conftest files; the only test code another test module imports.

Test modules never import each other or a ``conftest``: what two of them share lives here, once, in a
module by topic.  Fixtures stay in the conftest files (which import these helpers too).

- ``cli``: the repository root, the ``chaosmesh-qa`` and ``chaos`` command lines, ``run_cli``.
- ``sandbox``: ``Sandbox`` (``chaosmesh-qa up``/``down``/``status``) and ``serve`` (a sandbox on a given mesh).
- ``kube``: ``KubeSandbox`` (a sandbox serving the Kubernetes API emulation) and managed Istio objects.
- ``runs``: the shipped experiments' cases, one ``chaos run`` of them, and the ``chaosmesh-qa run`` of pod-kill.
- ``client``: talking to a running sandbox like a client or a mesh workload would.
- ``traffic``: Locust process markers, the stub HTTP server (``stub_server.py``), chaos runs, timeline waits.
- ``latency``: what a delay fault does to sequential requests, bounded half-way between the outcomes (both targets).
- ``browser``: headless Chromium over the DevTools pipe, for the HTML report.
- ``corpus``, ``manifests``, ``semantics``, ``editing``: mesh inputs written for the tests and how they are judged.
- ``fuzz``: strategies and the independent oracle of the input fuzz tests.
- ``lanes``: the unit lane's guard (no process may start) and the ``processes`` marker's bookkeeping.
"""
