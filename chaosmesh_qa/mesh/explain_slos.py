"""Latency SLOs that the metrics cannot resolve: ``chaosmesh-qa explain --experiment FILE``.

``slo_findings(paths, dialect)`` reads Chaos Toolkit experiments (JSON or YAML) and finds every
latency threshold a Prometheus-measured probe compares against (``recovered_within``'s ``slo``
``max_p*_ms`` keys, ``latency_quantile``'s tolerance) that lies inside a histogram bucket of the
dialect's latency histogram (``Catalog.bucket_gap``).  ``histogram_quantile`` interpolates
linearly inside a bucket, so such a probe compares an interpolation with the threshold: it passes
or fails for reasons the data does not hold.  Called by ``mesh.explain.explain``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh.findings import Finding
from chaosmesh_qa.metrics.catalog import load_catalog

MAX_EXPERIMENT_BYTES = 4 * 1024 * 1024
PROBES = "chaosmesh_qa.probes"


def slo_findings(paths: list[Path], dialect: str = "envoy") -> list[Finding]:
    catalog = load_catalog(dialect)
    found = []
    for path in paths:
        for where, limit_ms in _thresholds(path, _read(path)):
            gap = catalog.bucket_gap(limit_ms)
            if gap is None:
                continue
            lower, upper = gap
            nearest = lower if limit_ms - lower <= upper - limit_ms else upper
            found.append(Finding(
                "CMQ-M001", "warning", f"{path}: {where}",
                f"latency threshold {limit_ms:g} ms lies between the {dialect} histogram's buckets {lower:g} and "
                f"{upper:g} ms", "Prometheus interpolates linearly inside a bucket: the probe compares a guess with "
                f"the threshold (a threshold on a bucket bound, such as {nearest:g} ms, is measured; or measure "
                "on the client timeline)", str(path)))
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_EXPERIMENT_BYTES:
            raise InvalidArgument(f"--experiment {path}: larger than {MAX_EXPERIMENT_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise InvalidArgument(f"--experiment {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"--experiment {path}: not UTF-8 text") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"--experiment {path}: not a JSON/YAML experiment ({' '.join(str(exc).split())})") \
            from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"--experiment {path}: an experiment is a mapping, got {type(doc).__name__}")
    return doc


def _thresholds(path: Path, experiment: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """``(location, milliseconds)`` of each Prometheus-measured latency threshold of the experiment."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    sections = [("steady-state-hypothesis.probes", hypothesis.get("probes") if isinstance(hypothesis, dict) else []),
                ("method", experiment.get("method"))]
    for section, activities in sections:
        for i, activity in enumerate(activities if isinstance(activities, list) else []):
            if not isinstance(activity, dict) or not isinstance(activity.get("provider"), dict):
                continue
            provider = activity["provider"]
            if not str(provider.get("module", "")).startswith(PROBES):
                continue
            arguments = provider.get("arguments")
            arguments = arguments if isinstance(arguments, dict) else {}
            at = f"{section}[{i}] ({activity.get('name', '?')})"
            if provider.get("func") == "recovered_within" and arguments.get("measure", "prometheus") == "prometheus":
                slo = arguments.get("slo")
                for key, value in (slo.items() if isinstance(slo, dict) else ()):
                    if str(key).endswith("_ms") and _number(value):
                        yield f"{at}: arguments.slo.{key}", float(value)
            elif provider.get("func") == "latency_quantile":
                yield from ((f"{at}: tolerance{suffix}", v) for suffix, v in _tolerance_bounds(activity))


def _tolerance_bounds(activity: dict[str, Any]) -> Iterator[tuple[str, float]]:
    tolerance = activity.get("tolerance")
    if isinstance(tolerance, int | float) and not isinstance(tolerance, bool):
        yield "", float(tolerance)
    elif isinstance(tolerance, dict) and isinstance(tolerance.get("range"), list):
        for j, bound in enumerate(tolerance["range"]):
            if _number(bound) and bound > 0:
                yield f".range[{j}]", float(bound)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

