"""Tracing in the embedded mesh: the Envoy tracer configuration and the sandbox's Zipkin-v2-compatible receiver."""
