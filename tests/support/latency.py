"""What a delay fault does to sequential requests, bounded by the fault's mechanism and the baseline measured in
the same test -- never by this machine's speed (issue 19: tests that assert the code, not the machine).

A request the fault holds takes the delay plus its path; one the fault misses (or one sent after the heal) takes
its path.  The windows here are 20 sequential requests each: ~0.1 s of baseline against ~4 s of delayed requests.
The baseline's own spread over 0.1 s says nothing about how the shared machine's load moves over the seconds
between the windows, so every bound here sits half-way between the two outcomes it tells apart (held or not held,
the delay applied once or twice), from the baseline measured just before: half a delay (100 ms for 200 ms) of
room for the machine either way, and still a clean verdict on the fault.  Where the baseline spans seconds of
Locust traffic, tests/traffic/test_traffic_sandbox.py bounds the median by the spread it measured instead.

Used by the delay tests of both targets: tests/actions/test_faults.py, tests/targets/kubernetes/test_faults.py
and tests/emulation/kubeapi/test_apply.py.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def assert_delay_effect(baseline_s: Sequence[float], faulted_s: Sequence[float], healed_s: Sequence[float],
                        delay_ms: float) -> None:
    """Response times (seconds) of sequential requests before, during and after a ``delay_ms`` fault on every
    request: each bound, with why it is what it is."""
    baseline, faulted, healed = ([t * 1000 for t in window] for window in (baseline_s, faulted_s, healed_s))
    before, fastest = statistics.median(baseline), min(baseline)
    during, after = statistics.median(faulted), statistics.median(healed)
    seen = {"baseline_ms": sorted(baseline), "faulted_ms": sorted(faulted), "healed_ms": sorted(healed)}
    # Held or not: a held request takes at least the delay plus a path no faster than the fastest baseline
    # request; a missed one takes about the baseline median.  Half-way between the two tells them apart.
    held = (before + delay_ms + fastest) / 2
    assert min(faulted) > held, ("a request escaped the delay", held, seen)
    # The median rises by at least the delay less the baseline median: the median held request waits the whole
    # delay (the sidecar's timer may release a rare request a few ms early -- tests/traffic/test_traffic_sandbox.py
    # -- never half of them).
    assert during - before >= delay_ms - before, ("the median rose by less than the delay", seen)
    # Once, not twice: below half-way between the delay applied once (baseline + delay) and twice (baseline +
    # 2 x delay) -- a second filter, or a retry of a delayed request, would land on the far side.
    assert during < before + 1.5 * delay_ms, ("the median rose by more than one delay", seen)
    # After the heal no request is held, and the median is back nearer the baseline than the delay.
    assert min(healed) < held, ("every request is still held after the heal", held, seen)
    assert after < before + delay_ms / 2, ("the median stayed delayed after the heal", seen)


def assert_fails_fast(elapsed_s: float, baseline_s: float, timeout_s: float) -> None:
    """A refused connection fails at once; a blackholed one waits for the caller's connect ``timeout_s``.  Half-way
    between the baseline request (``baseline_s``) and that wait tells the two apart, whatever the machine's load."""
    assert elapsed_s < (baseline_s + timeout_s) / 2, (
        f"took {elapsed_s:.3f} s: nearer the {timeout_s:g} s connect timeout than the {baseline_s:.3f} s baseline")
