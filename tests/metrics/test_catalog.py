"""Unit tests of the SLI catalog (no sandbox): loading, validation, rendering and bad parameters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.metrics import load_catalog
from chaosmesh_qa.metrics.catalog import PROBES_ENV, Catalog, default_probes_dir, seconds

REQUIRED = {
    "request_rate", "error_ratio", "latency_quantile",
    "edge_request_rate", "edge_error_ratio", "edge_latency_quantile",
    "retries", "circuit_breaker_overflows", "outlier_ejections_active", "healthy_endpoints", "injected_faults",
}
REPO_PROBES = Path(__file__).resolve().parents[2] / "chaosmesh_qa" / "sli"  # probes/ links here


def required_args(catalog: Catalog, name: str) -> dict[str, str]:
    values = {"service": "catalog", "source": "frontend", "version": "v1"}
    return {p: values[p] for p in catalog.slis[name].params if catalog.params[p].default is None}


def balanced(query: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    for ch in re.sub(r'"[^"]*"', '""', query):  # ignore regexes inside label matchers
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                return False
    return not any(depth.values())


# ------------------------------------------------------------------------------------ loading


def test_default_probes_dir_is_the_shipped_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROBES_ENV, raising=False)
    assert default_probes_dir() == REPO_PROBES


@pytest.mark.parametrize("dialect", ["envoy", "istio"])
def test_shipped_catalogs_load_with_the_required_slis(dialect: str) -> None:
    catalog = load_catalog(dialect)
    assert catalog.dialect == dialect
    assert catalog.path == REPO_PROBES / f"{dialect}.yaml"
    assert set(catalog.slis) >= REQUIRED
    for sli in catalog.slis.values():
        assert sli.description and sli.unit
        assert set(sli.params) <= set(catalog.params)


def test_envoy_is_exercised_istio_is_not_and_both_have_the_same_names() -> None:
    envoy, istio = load_catalog("envoy"), load_catalog("istio")
    assert envoy.exercised is True
    assert istio.exercised is False
    assert set(envoy.slis) == set(istio.slis)
    for name in envoy.slis:
        assert envoy.slis[name].params == istio.slis[name].params, name


def test_explicit_directory_and_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "envoy.yaml").write_text((REPO_PROBES / "envoy.yaml").read_text())
    assert load_catalog("envoy", tmp_path).path == tmp_path / "envoy.yaml"
    assert load_catalog("envoy", str(tmp_path)).path == tmp_path / "envoy.yaml"
    monkeypatch.setenv(PROBES_ENV, str(tmp_path))
    assert load_catalog().path == tmp_path / "envoy.yaml"


def test_missing_catalog_and_bad_dialect(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"nope\.yaml: no SLI catalog for dialect 'nope'"):
        load_catalog("nope", tmp_path)
    with pytest.raises(InvalidArgument, match="not a valid name"):
        load_catalog("../probes/envoy", tmp_path)


def test_unparsable_yaml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "envoy.yaml").write_text("slis: [unclosed\n  - x: {\n")
    with pytest.raises(InvalidArgument) as info:
        load_catalog("envoy", tmp_path)
    assert "envoy.yaml: unreadable SLI catalog" in str(info.value)
    assert "\n" not in str(info.value)


def minimal() -> dict[str, Any]:
    return {
        "dialect": "envoy",
        "exercised": True,
        "description": "test catalog",
        "params": {
            "service": {"kind": "name", "description": "svc"},
            "window": {"kind": "duration", "default": "10s", "description": "w"},
        },
        "slis": {
            "request_rate": {
                "description": "rps", "unit": "rps", "params": ["service", "window"],
                "query": 'sum(rate(x{{service="{service}"}}[{window}])) / {window_seconds}',
            },
        },
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def test_minimal_catalog_renders(tmp_path: Path) -> None:
    catalog = load_catalog("envoy", write(tmp_path, minimal()))
    assert catalog.render("request_rate", service="web") == 'sum(rate(x{service="web"}[10s])) / 10'


BROKEN = [
    (lambda d: d.update(extra=1), "unknown field 'extra'"),
    (lambda d: d.update(dialect="istio"), "'dialect' must be 'envoy'"),
    (lambda d: d.update(exercised="yes"), "'exercised' must be true or false"),
    (lambda d: d.update(slis={}), "slis: expected a non-empty mapping"),
    (lambda d: d["slis"].update(Bad={}), "slis: 'Bad' is not a valid name"),
    (lambda d: d["slis"]["request_rate"].pop("unit"), "SLI 'request_rate': 'unit' must be a non-empty string"),
    (lambda d: d["slis"]["request_rate"].update(owner="me"), "SLI 'request_rate': unknown field 'owner'"),
    (lambda d: d["slis"]["request_rate"].update(params=["service", "window", "quantile"]),
     "SLI 'request_rate': 'params' must list distinct parameters declared"),
    (lambda d: d["slis"]["request_rate"].update(params=["service"]),
     "SLI 'request_rate': query placeholders .* do not match params"),
    (lambda d: d["slis"]["request_rate"].update(query='x{service="{service}"}[{window}]'),
     "SLI 'request_rate': bad query template"),
    (lambda d: d["slis"]["request_rate"].update(query="x{{a={service!r}}}[{window}]"),
     r"SLI 'request_rate': placeholder \{service\} must be a plain"),
    (lambda d: d["slis"]["request_rate"].update(query="x{{a={service.x}}}[{window}]"),
     "SLI 'request_rate': placeholder"),
    (lambda d: d["slis"]["request_rate"].update(query="x{{a={0}}}[{window}] {service}"),
     "SLI 'request_rate': placeholder"),
    (lambda d: d["params"]["service"].update(kind="text"), "param 'service': 'kind' must be one of"),
    (lambda d: d["params"]["window"].update(default="ten"), r"param 'window': default: 'ten' is not a Prometheus"),
    (lambda d: d["params"]["service"].update(format='"}} or {}'), "param 'service': 'format' must be"),
    (lambda d: d["params"].update(fault={"kind": "choice", "description": "f", "choices": {"a": 'x"} or'}}),
     "param 'fault': 'choices' must map values to identifiers"),
]


@pytest.mark.parametrize(("breaks", "message"), BROKEN)
def test_invalid_catalogs_name_the_file_and_the_entry(tmp_path: Path, breaks: Any, message: str) -> None:
    doc = minimal()
    breaks(doc)
    with pytest.raises(InvalidArgument) as info:
        load_catalog("envoy", write(tmp_path, doc))
    text = str(info.value)
    assert text.startswith(str(tmp_path / "envoy.yaml")), text
    assert re.search(message, text), text
    assert "\n" not in text


# ---------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("dialect", ["envoy", "istio"])
def test_every_sli_renders_to_balanced_promql(dialect: str) -> None:
    catalog = load_catalog(dialect)
    for name in catalog.slis:
        query = catalog.render(name, **required_args(catalog, name))
        assert balanced(query), (name, query)
        assert "{service}" not in query and "{window" not in query, (name, query)
        if "service" in catalog.slis[name].params:
            assert "catalog" in query, (name, query)


def test_envoy_renderings() -> None:
    envoy = load_catalog("envoy")
    rate = envoy.render("request_rate", service="catalog")
    assert 'envoy_http_conn_manager_prefix="inbound",service="catalog"' in rate
    assert "offset 10s" in rate and rate.endswith("/ 10")
    edge = envoy.render("edge_error_ratio", source="ingress", service="frontend", window="1m30s")
    assert 'service="ingress",envoy_cluster_name=~"frontend(_.+)?"' in edge
    assert "[1m30s]" in edge and "envoy_response_code_class=\"5\"" in edge
    p50 = envoy.render("latency_quantile", service="frontend", quantile=0.5)
    assert p50.startswith("histogram_quantile(0.5, ")
    assert envoy.render("latency_quantile", service="frontend", quantile=".9").startswith("histogram_quantile(0.9, ")
    assert envoy.render("latency_quantile", service="frontend").startswith("histogram_quantile(0.99, ")
    assert 'envoy_cluster_name="reviews"' in envoy.render("healthy_endpoints", service="reviews")
    assert 'envoy_cluster_name="reviews"' in envoy.render("healthy_endpoints", service="reviews", subset="")
    assert 'envoy_cluster_name="reviews_v2"' in envoy.render("healthy_endpoints", service="reviews", subset="v2")
    faults = envoy.render("injected_faults", service="catalog", fault="delays")
    assert "envoy_http_fault_delays_injected{" in faults and 'envoy_fault_downstream_cluster=""' in faults
    assert "envoy_http_fault_aborts_injected{" in envoy.render("injected_faults", service="catalog")
    assert envoy.render("retries", service="catalog", window="500ms").count("/ 0.5") == 1


def test_istio_renderings() -> None:
    istio = load_catalog("istio")
    assert 'reporter="destination",destination_service_name="reviews"' in istio.render("error_ratio", service="reviews")
    edge = istio.render("edge_request_rate", source="frontend", service="reviews")
    assert 'reporter="source",source_canonical_service="frontend"' in edge
    faults = istio.render("injected_faults", service="reviews", fault="delays")
    assert 'response_flags=~"(.*,)?DI(,.*)?"' in faults
    # issue 18 point 9: the kubernetes target injects at the callee, whose proxy records the FI/DI flag
    assert 'reporter="destination"' in faults and 'reporter="source"' not in faults
    assert r"outbound\\|[0-9]+\\|v1\\|reviews\\..+" in istio.render("healthy_endpoints", service="reviews", subset="v1")


def test_point9_a_clusters_own_names_for_sources_win_over_the_catalogs() -> None:
    """Issue 18 point 9: a probe's `source` is a service name; on a cluster whose ingress gateway Istio's Helm chart
    named (canonical service istio-ingress) and whose frontend pods are a Helm chart's (app.kubernetes.io/name:
    storefront), the queries must name them as Istio's metrics do."""
    istio = load_catalog("istio")
    assert 'source_canonical_service="istio-ingressgateway"' in istio.render("edge_error_ratio", source="ingress",
                                                                           service="frontend")
    named = istio.with_aliases("source", {"ingress": "istio-ingress", "frontend": "storefront"})
    assert 'source_canonical_service="istio-ingress"' in named.render("edge_error_ratio", source="ingress",
                                                                    service="frontend")
    assert 'source_canonical_service="storefront"' in named.render("edge_request_rate", source="frontend",
                                                                 service="catalog")
    assert 'destination_service_name="frontend"' in named.render("error_ratio", service="frontend")  # sources only


def test_seconds() -> None:
    assert seconds("10s") == 10
    assert seconds("1m30s") == 90
    assert seconds("250ms") == 0.25
    assert seconds("1h") == 3600


# ------------------------------------------------------------------------------ bad parameters


def test_unknown_sli() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown SLI 'error_rate' in the envoy catalog \(known: .*error_ratio"):
        load_catalog().render("error_rate", service="catalog")


def test_unknown_parameter_names_the_sli_and_the_parameter() -> None:
    expected = r"^SLI 'request_rate': unknown parameter 'source' \(expected: service, window\)$"
    with pytest.raises(InvalidArgument, match=expected):
        load_catalog().render("request_rate", service="catalog", source="frontend")


def test_missing_parameter_names_the_sli_and_the_parameter() -> None:
    with pytest.raises(InvalidArgument, match=r"^SLI 'edge_error_ratio': missing parameter 'source'$"):
        load_catalog().render("edge_error_ratio", service="catalog")
    with pytest.raises(InvalidArgument, match=r"^SLI 'request_rate': missing parameter 'service'$"):
        load_catalog().render("request_rate", service=None)


INJECTIONS = [
    'catalog"} or vector(1) or x{a="',
    "catalog\n",
    "catalog.*",
    "Catalog",
    "cat_alog",
    "-catalog",
    "catalog-",
    "",
    " catalog",
    7,
    True,
    ["catalog"],
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_service_and_source_must_be_dns_1123_labels(value: Any) -> None:
    envoy = load_catalog()
    with pytest.raises(InvalidArgument) as info:
        envoy.render("error_ratio", service=value)
    assert str(info.value).startswith("SLI 'error_ratio': parameter 'service': ")
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidArgument, match=r"^SLI 'edge_request_rate': parameter 'source': "):
        envoy.render("edge_request_rate", source=value, service="catalog")


@pytest.mark.parametrize("value", ["10", "0s", "10 s", "10s]) or vector(1", "1.5s", 10, "-5s"])
def test_bad_windows(value: Any) -> None:
    expected = r"^SLI 'request_rate': parameter 'window': .* is not a Prometheus duration"
    with pytest.raises(InvalidArgument, match=expected):
        load_catalog().render("request_rate", service="catalog", window=value)


@pytest.mark.parametrize("value", [0, 1, 1.5, "0", "1.0", "0.99)", "abc", "-0.5", 0.0, "nan", True])
def test_bad_quantiles(value: Any) -> None:
    with pytest.raises(InvalidArgument, match=r"^SLI 'latency_quantile': parameter 'quantile': "):
        load_catalog().render("latency_quantile", service="catalog", quantile=value)


def test_bad_choice_and_subset() -> None:
    envoy = load_catalog()
    expected = r"^SLI 'injected_faults': parameter 'fault': 'both' is not one of aborts, delays$"
    with pytest.raises(InvalidArgument, match=expected):
        envoy.render("injected_faults", service="catalog", fault="both")
    with pytest.raises(InvalidArgument, match=r"^SLI 'healthy_endpoints': parameter 'subset': 'v_1' is not a DNS-1123"):
        envoy.render("healthy_endpoints", service="reviews", subset="v_1")


def test_envoy_catalog_buckets_are_the_sandboxs_buckets() -> None:
    from chaosmesh_qa.targets.local.envoy.listeners import HISTOGRAM_BUCKETS_MS

    assert load_catalog("envoy").latency_buckets_ms == tuple(float(b) for b in HISTOGRAM_BUCKETS_MS)
