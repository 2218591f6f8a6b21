"""Chaos Toolkit controls shipped with chaosmesh-qa (sandbox, traffic, safety), and the per-run reset they share.

Every control's ``before_experiment_control`` calls ``start_of_run()`` and its ``cleanup_control``
calls ``end_of_run()``: the first control to start a run gives it a fresh fault owner
(``chaosmesh_qa.targets.run.begin_run``) and clears what earlier runs in the same Python process left
in module state (the recovery timelines of ``chaosmesh_qa.probes.recovery``), so a process that
runs several experiments never copies one run's measurements into another's journal.
"""

from __future__ import annotations


def start_of_run() -> bool:
    """Reset per-run state once per experiment run (later calls in the same run do nothing)."""
    from chaosmesh_qa.probes import recovery
    from chaosmesh_qa.targets.run import begin_run

    if not begin_run():
        return False
    recovery.reset()
    return True


def end_of_run() -> None:
    from chaosmesh_qa.targets.run import end_run

    end_run()
