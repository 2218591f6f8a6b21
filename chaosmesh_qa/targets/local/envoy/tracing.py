"""Envoy's Zipkin tracer for every sidecar listener and the ingress of the embedded mesh.

``chaosmesh_qa.targets.local.envoy.listeners`` adds ``hcm_tracing()`` to the inbound, outbound and
ingress HTTP connection managers (not to the stats listener), and its ``bootstrap`` adds the static
cluster ``COLLECTOR_CLUSTER`` (127.0.0.1, the receiver's port) and the ``RUNTIME`` flush settings.
Spans go as Zipkin protobuf (``HTTP_PROTO``) to the supervisor's receiver (``targets.local.tracing.collector``,
which reads them with ``tracing.zipkin_proto``).  Facts relied on are in docs/how-to/verdicts/tracing.md; why
protobuf and a flush by time, in docs/explanation/envoy-notes.md ("The sidecar's p99 tail").
"""

from __future__ import annotations

from chaosmesh_qa.targets.local.envoy.common import API, JSON, TYPE

COLLECTOR_CLUSTER = "_zipkin"  # starts with "_": never a DNS-1123 service name
SPANS_PATH = "/api/v2/spans"
# Envoy batches 5 spans or 5 s by default: a short experiment would see traces half reported.  The flush
# is by time, every half second (every trace whole a second after its request ended): a batch is encoded
# on the worker thread that fills it, and a flush every 50 spans held a request every 50 for milliseconds
# (the p99 tail of issue 23).  1,000 spans bound one Envoy's batch above 2,000 rps.
RUNTIME = {"tracing.zipkin.min_flush_spans": 1000, "tracing.zipkin.flush_interval_ms": 500}
SAMPLING_PERCENT = 100.0


def hcm_tracing() -> JSON:
    """An HTTP connection manager's ``tracing``: every request sampled, one span per Envoy hop.

    ``shared_span_context: false``: a caller's CLIENT span and the callee's SERVER span are two
    spans (the callee's a child of the caller's), so the tree shows each hop on both sides.
    """
    return {
        "random_sampling": {"value": SAMPLING_PERCENT},
        "provider": {
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                TYPE: f"{API}.config.trace.v3.ZipkinConfig",
                "collector_cluster": COLLECTOR_CLUSTER,
                "collector_endpoint": SPANS_PATH,
                "collector_endpoint_version": "HTTP_PROTO",
                "shared_span_context": False,
            },
        },
    }
