"""`chaos discover chaosmesh-qa --no-install` describes every action with its argument types."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import CHAOS

pytestmark = pytest.mark.processes

EXPECTED = {
    "kill_pods": {"service": "string", "count": "integer", "percent": "number", "version": "string",
                  "restart_after_s": "number", "mode": "string", "zone": "string"},
    "fail_pods": {"service": "string", "duration_s": "number", "count": "integer", "percent": "number",
                  "version": "string", "zone": "string"},
    "kill_app": {"service": "string", "count": "integer", "percent": "number", "version": "string",
                 "restart_after_s": "number"},
    "inject_latency": {"service": "string", "delay_ms": "integer", "duration_s": "number", "percent": "integer",
                       "source": "string", "zone": "string"},
    "inject_abort": {"service": "string", "http_status": "integer", "percent": "integer", "duration_s": "number",
                     "source": "string", "zone": "string"},
    "partition": {"a": "string", "b": "string", "duration_s": "number", "direction": "string", "mode": "string",
                  "count": "integer", "percent": "number", "version": "string", "zone": "string", "isolate": "boolean"},
    "heal": {"fault_id": "string"},
}


def test_chaos_discover_lists_every_action_with_types(tmp_path: Path) -> None:
    subprocess.run([CHAOS, "--no-version-check", "--no-log-file", "discover", "chaosmesh-qa", "--no-install"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=120)
    discovery = json.loads((tmp_path / "discovery.json").read_text())
    actions = {a["name"]: a for a in discovery["activities"] if a["type"] == "action"}
    assert set(EXPECTED) <= set(actions)
    for name, arguments in EXPECTED.items():
        described = {a["name"]: a.get("type") for a in actions[name]["arguments"] if a["name"] != "configuration"}
        assert described == arguments, name
        assert actions[name]["doc"], f"{name} has a docstring"
