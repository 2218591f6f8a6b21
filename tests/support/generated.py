"""Suites written by `chaosmesh-qa generate` for the tests of tests/scaffold: the default mesh's suite as it must be,
and ``write_suite`` (the command in process)."""

from __future__ import annotations

from pathlib import Path

from tests.support.inprocess import run_main

MESHES = Path(__file__).resolve().parents[2] / "experiments" / "meshes"
DEFAULT_SUITE = {  # experiment -> the promises it is written for
    "authz": ["authz-rule:default/inventory-callers:0"],
    "latency-catalog": ["timeout:catalog:VirtualService/catalog:spec.http[0]"],
    "latency-inventory": ["timeout:inventory:VirtualService/inventory:spec.http[0]", "connection-pool:inventory"],
    "mtls": ["mtls:catalog", "mtls:frontend", "mtls:inventory", "mtls:reviews"],
    "partition-catalog": ["connect-timeout:catalog"],
    "partition-reviews": ["connect-timeout:reviews"],
    "pod-kill-catalog": ["retries:catalog:VirtualService/catalog:spec.http[0]", "outlier-detection:catalog"],
    "routing-reviews-0": ["match:reviews:VirtualService/reviews:spec.http[0]"],
    "routing-reviews-1": ["routing:reviews:VirtualService/reviews:spec.http[1]"],
    "tracing": ["trace-propagation:catalog", "trace-propagation:frontend"],
}


def write_suite(tmp_path: Path, mesh: Path | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "suite"
    args = ["--mesh", str(mesh)] if mesh else []
    result = run_main("generate", *args, "--out", str(out), cwd=tmp_path)
    assert result.code == 0, result.stderr
    return out
