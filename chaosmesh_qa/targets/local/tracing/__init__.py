"""Tracing in the embedded mesh: the sandbox's Zipkin-v2-compatible receiver (the Envoy tracer's configuration
is rendered with the rest of Envoy's, in ``envoy.tracing``)."""
