"""Traffic capacity: the highest sustained rate through ingress -> frontend -> backend with FastHttpUser,
and where the CPU goes (Locust's cost per request, Envoys, apps), on the bench mesh ``bench/meshes/two-tier``.

1. Saturation: Locust unpaced (no ``rate_rps``) for ``WINDOW_S`` seconds -> the closed-loop throughput.
2. Sustained: paced runs from that throughput downwards (-5 % steps) until one holds: every second
   within 10 % of the target, no missed pacing slot, errors < 1 %.
CPU comes from ``/proc/<pid>/stat`` (utime + stime) of every process of the sandbox and of Locust,
sampled at the edges of a whole-second window; requests come from the same seconds of the timeline.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import results
from bench.sandbox_bench import _cli, _process_tree
from chaosmesh_qa.traffic import runner
from chaosmesh_qa.traffic import timeline as tl
from chaosmesh_qa.traffic.profile import parse_profile

MESH = Path(__file__).parent / "meshes" / "two-tier"
WINDOW_S = 8
USERS = 48  # unpaced: enough in flight to saturate the mesh (more only adds connections and queueing)
PACED_USERS = 96  # paced: slack so that latency spikes near saturation do not drop slots
HZ = os.sysconf("SC_CLK_TCK")
# Istio's published sidecar cost, 0.20 vCPU per 1,000 rps, is measured at 1,000 rps: compared at that rate, since an
# Envoy's CPU per request falls with the rate (more requests per wake-up).  A request of the bench mesh crosses four
# Envoy passes: the ingress, the frontend's sidecar in and out, the backend's sidecar in.
ISTIO_RATE_RPS = 1000.0
ISTIO_CPU_MS_PER_PASS = 0.20
ENVOY_PASSES = 4


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / HZ  # utime + stime


def classify(pid: int) -> str:
    """A readable group for a process of the sandbox or of Locust."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    if "locust" in cmdline:
        return "locust"
    if "envoy" in cmdline:
        if "istio-ingressgateway" in cmdline:
            return "envoy ingress"
        return "envoy sidecar " + ("frontend" if "/frontend-" in cmdline else "backend")
    if "chaosmesh_qa.apps.demo" in cmdline:
        if forked := re.search(r"service=(\S+)", cmdline):  # forked by the fork server: named in its title
            return "app " + forked.group(1)
        app = next((e for e in environ if e.startswith(b"CHAOSMESH_APP=")), b"CHAOSMESH_APP={}")
        return "app " + str(json.loads(app.split(b"=", 1)[1]).get("service", "?"))
    if "prometheus" in cmdline:
        return "prometheus"
    if "supervisor" in cmdline:
        return "supervisor"
    return "other"


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, not idle/iowait) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / HZ


def measure(supervisor: int, locust: list[int], timeline: Path) -> dict[str, Any]:
    """CPU per group and requests over the next ``WINDOW_S`` whole seconds."""
    time.sleep(1 - time.time() % 1)
    start = round(time.time())
    pids = [*_process_tree(supervisor), *locust]
    groups = {pid: classify(pid) for pid in pids}
    before = {pid: cpu_seconds(pid) for pid in pids}
    machine_before = machine_busy_seconds()
    time.sleep(start + WINDOW_S - time.time())
    after = {pid: cpu_seconds(pid) for pid in pids}
    machine = (machine_busy_seconds() - machine_before) / WINDOW_S
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    deadline = time.monotonic() + 15
    while (lines := tl.read_timeline(timeline)) and lines[-1]["t"] < start + WINDOW_S - 1:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    window = [x for x in lines if start <= x["t"] < start + WINDOW_S]
    cores: dict[str, float] = {}
    for pid in pids:
        cores[groups[pid]] = cores.get(groups[pid], 0.0) + (after[pid] - before[pid]) / WINDOW_S
    requests = sum(x["requests"] for x in window)
    return {"rps": [x["requests"] for x in window], "requests": requests,
            "failures": sum(x["failures"] for x in window),
            "missed": sum(x.get("missed", 0) for x in window), "cores": dict(cores), "load1": load,
            "others_cores": max(0.0, machine - sum(cores.values())),
            "p50": statistics.median(x["p50"] for x in window if x["p50"] is not None) if requests else None,
            "p99": statistics.median(x["p99"] for x in window if x["p99"] is not None) if requests else None}


def run_traffic(url: str, state_dir: Path, supervisor: int, rate: float | None) -> dict[str, Any]:
    profile = parse_profile({"users": PACED_USERS if rate else USERS, "rate_rps": rate, "warmup_s": 2, "timeout_s": 5,
                             "max_duration_s": 120})
    timeline = state_dir.parent / f"timeline-{rate or 'max'}.jsonl"
    run = runner.start(profile, url, timeline)
    try:
        if rate is None:
            time.sleep(profile.users / profile.effective_spawn_rate + 3)
        else:
            try:
                runner.wait_ready(run, profile)
            except runner.TrafficError as exc:
                return {"rps": [], "requests": 0, "failures": 0, "missed": 0, "cores": {}, "error": str(exc)}
        return measure(supervisor, run.pids, timeline)
    finally:
        runner.stop(timeline)


def held(result: dict[str, Any], rate: float) -> bool:
    return (bool(result["rps"]) and all(abs(r - rate) <= 0.1 * rate for r in result["rps"])
            and result["missed"] == 0 and result["failures"] <= 0.01 * max(result["requests"], 1))


def find_sustained(url: str, state: Path, supervisor: int, rate: float) -> tuple[float, dict[str, Any]] | None:
    """From ``rate``: 100 rps steps up while the rate holds, or 50 rps steps down until it does (at most 8 runs)."""
    best: tuple[float, dict[str, Any]] | None = None
    step = 0.0
    for _ in range(8):
        result = run_traffic(url, state, supervisor, rate)
        ok = held(result, rate)
        print(f"  paced {rate:.0f} rps: per second {result['rps']}, missed {result['missed']}, "
              f"failures {result['failures']}, other processes {result.get('others_cores', 0):.2f} cores: "
              f"{'held' if ok else 'not held'}", flush=True)
        if ok:
            best = (rate, result)
        if step == 0.0:
            step = 100.0 if ok else -50.0
        if (step > 0 and not ok) or (step < 0 and ok) or rate + step < 100:
            break
        rate += step
    return best


def main() -> None:
    speed = results.machine_speed_s()
    with tempfile.TemporaryDirectory(prefix="traffic-bench-") as tmp:
        state = Path(tmp) / "state"
        _cli("up", "--mesh", str(MESH), "--state-dir", str(state))
        try:
            status = json.loads(_cli("status", "--json", "--state-dir", str(state)))
            url, supervisor = status["ingress_url"], int(status["pid"])
            saturated = run_traffic(url, state, supervisor, None)
            sustained = find_sustained(url, state, supervisor, round(statistics.median(saturated["rps"]) / 50) * 50.0)
            at_istio_rate = run_traffic(url, state, supervisor, ISTIO_RATE_RPS)
        finally:
            _cli("down", "--state-dir", str(state))
    report(saturated, sustained, speed)
    report_istio_rate(at_istio_rate)
    results.record("traffic.saturation_rps", statistics.median(saturated["rps"]), "rps", higher_is_better=True,
                   label="traffic: saturation throughput")
    results.record("traffic.sustained_rps", sustained[0] if sustained else 0.0, "rps", 1500.0, higher_is_better=True,
                   label="traffic: highest sustained paced rate")


def envoy_ms_per_pass(result: dict[str, Any]) -> float | None:
    """Envoy CPU per request per pass over a measured window (every Envoy of the sandbox)."""
    served = result["requests"] / WINDOW_S
    envoys = sum(cores for group, cores in result["cores"].items() if group.startswith("envoy"))
    return envoys * 1000 / served / ENVOY_PASSES if served else None


def report_istio_rate(result: dict[str, Any]) -> None:
    per_pass = envoy_ms_per_pass(result)
    if per_pass is None:
        print(f"  paced {ISTIO_RATE_RPS:.0f} rps (Istio's benchmark rate): no request measured "
              f"({result.get('error', 'none served')})")
        return
    print(f"  Envoy CPU per request per pass at {ISTIO_RATE_RPS:.0f} rps (paced; Istio's benchmark rate): "
          f"{per_pass:.3f} ms (Istio: {ISTIO_CPU_MS_PER_PASS:.2f} ms; {result['requests'] / WINDOW_S:.0f} rps served, "
          f"p99 {result['p99']:.1f} ms)")
    results.record("traffic.envoy_cpu_ms_per_pass_at_1000rps", per_pass, "ms", ISTIO_CPU_MS_PER_PASS,
                   label="Envoy CPU per request per pass at 1,000 rps (Istio's)")


def report(saturated: dict[str, Any], sustained: tuple[float, dict[str, Any]] | None, speed: float) -> None:
    print("traffic, ingress -> frontend -> backend (2 pods each, mTLS), Locust FastHttpUser, one Locust process "
          f"(machine speed: a fixed Python loop took {speed:.3f} s):")
    top = statistics.median(saturated["rps"])
    print(f"  saturation (unpaced, {USERS} users) throughput, median of {WINDOW_S} s: {top:8.0f} rps "
          f"(p50 {saturated['p50']:.1f} ms, p99 {saturated['p99']:.1f} ms; CPU of processes outside the "
          f"bench: {saturated['others_cores']:.2f} cores)")
    if sustained is None:
        print("  highest sustained (paced) rate: none held")
    else:
        rate, result = sustained
        print(f"  highest sustained (paced, {PACED_USERS} users) rate, every second within 10 %: {rate:8.0f} rps "
              "(goal >= 1500), "
              f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms")
    print(f"  CPU by process group at saturation (cores; {top:.0f} rps):")
    for group, cores in sorted(saturated["cores"].items(), key=lambda kv: -kv[1]):
        per_request = cores * 1e6 / top if top else 0.0
        print(f"    {group:<24} {cores:5.2f} cores  {per_request:6.0f} us/request")
    total = sum(saturated["cores"].values())
    print(f"    {'total':<24} {total:5.2f} cores  {total * 1e6 / top if top else 0:6.0f} us/request")
    if sustained is not None:
        rate, result = sustained
        locust = result["cores"].get("locust", 0.0)
        print(f"  Locust CPU per request at {rate:.0f} rps (paced): {locust * 1e6 / rate:.0f} us "
              f"({locust:.2f} cores)")


if __name__ == "__main__":
    main()
