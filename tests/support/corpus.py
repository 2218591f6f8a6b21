"""Expectation corpus helpers: a mesh directory written from text, loaded, and judged against its expected result.

Used by tests/mesh/test_gateways.py and tests/mesh/test_manifests.py: each case is a set of files
in the shapes real repositories use (written for these tests) with its expected result: accepted
(with exactly the expected warnings), or refused with one line naming file, resource and field.
``WEB_SUBSETS`` is the gateway corpus's DestinationRule, which tests/targets/local/test_gateway_traffic.py
serves too (``tests.support.sandbox.serve``); ``BOOKINFO`` is the bookinfo example's mesh directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.loader import LoadedMesh
from tests.support.cli import ROOT

Check = Callable[[LoadedMesh], None]
BOOKINFO = ROOT / "examples" / "bookinfo" / "mesh"
WEB_SUBSETS = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str]
    error: tuple[str, ...] = ()  # fragments of one problem (file, resource/field, reason)
    warnings: tuple[str, ...] = ()  # one fragment per warning expected, no other warning allowed
    check: Check | None = None
    notes: tuple[str, ...] = field(default=())


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def judge(case: Case, root: Path) -> None:
    write(root, case.files)
    if case.error:
        with pytest.raises(InvalidMeshConfig) as raised:
            load_mesh(root)
        problems = raised.value.problems
        assert all("\n" not in p for p in problems)
        assert any(all(f in p for f in case.error) for p in problems), f"{case.error} not in one of {problems}"
        return
    loaded = load_mesh(root)
    unmatched = list(loaded.warnings)
    for fragment in case.warnings:
        hits = [w for w in unmatched if fragment in w]
        assert hits, f"no warning with {fragment!r} in {loaded.warnings}"
        unmatched.remove(hits[0])
    assert not unmatched, f"unexpected warnings: {unmatched}"
    for fragment in case.notes:
        assert any(fragment in n for n in loaded.notes), f"no note with {fragment!r} in {loaded.notes}"
    if case.check is not None:
        case.check(loaded)
