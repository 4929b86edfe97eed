"""Benchmark: how long suspending and resuming a local lab takes, against a baseline in the same run.

The lab has ten background jobs besides its shell.  Two mechanisms are timed
on the same lab, one round each, alternating:

* **cgroup**: what the provider does where it can -- freeze and thaw the
  lab's cgroup (``provider.suspend``/``resume``);
* **signals** (the baseline): what the provider did before labs had cgroups,
  and still does where it has none -- SIGSTOP every process of the lab host's
  tree, pass after pass until no new one shows, then SIGCONT them children
  first.

The figures go to the terminal (``-s``) and, when ``HASTEXO_TEST_OUTPUT`` is
set, to ``benchmarks/local-suspend.json`` there.  The bound asserted is loose:
it catches a hang or a poll loop, not a loaded machine.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from hastexo_xblock.providers.local import processes

from .conftest import SIMPLE, lab_host_pid, ssh_run

ROUNDS = 20
MAX_MEDIAN_SECONDS = 0.5


def _time(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def test_suspend_and_resume_latency(provider):
    stack = provider.create("lab1", SIMPLE)
    assert ssh_run(stack, "for i in $(seq 10); do nohup sleep 1000 >/dev/null 2>&1 & done").exit_status == 0
    host = lab_host_pid(provider, "lab1")
    can_freeze = bool(provider.capabilities().cgroups.parents.get("freeze"))
    timings: dict[str, dict[str, list[float]]] = {
        "cgroup" if can_freeze else "provider": {"suspend": [], "resume": []},
        "signals": {"suspend": [], "resume": []},
    }
    ours = next(iter(timings))
    for _ in range(ROUNDS):
        timings[ours]["suspend"].append(_time(lambda: provider.suspend("lab1")))
        timings[ours]["resume"].append(_time(lambda: provider.resume("lab1")))
        timings["signals"]["suspend"].append(_time(lambda: processes.stop_tree(host)))
        timings["signals"]["resume"].append(_time(lambda: processes.continue_tree(host)))
    assert ssh_run(stack, "echo ok").stdout == "ok\n"

    report: dict[str, object] = {"rounds": ROUNDS, "processes": len(processes.descendants(host)) + 1}
    lines = [f"suspend/resume of a local lab ({report['processes']} processes), {ROUNDS} rounds, median ms"]
    for action in ("suspend", "resume"):
        ours_median = statistics.median(timings[ours][action])
        base_median = statistics.median(timings["signals"][action])
        report[action] = {
            ours: round(ours_median * 1000, 2),
            "signals": round(base_median * 1000, 2),
            "ratio": round(ours_median / base_median, 2),
        }
        lines.append(
            f"  {action:8} {ours} {ours_median * 1000:7.2f}   signals {base_median * 1000:7.2f}"
            f"   ratio {ours_median / base_median:.2f}x"
        )
        assert ours_median < MAX_MEDIAN_SECONDS, (action, ours_median)
    print("\n" + "\n".join(lines))
    output = os.environ.get("HASTEXO_TEST_OUTPUT")
    if output:
        os.makedirs(os.path.join(output, "benchmarks"), exist_ok=True)
        with open(os.path.join(output, "benchmarks", "local-suspend.json"), "w") as f:
            json.dump(report, f, indent=1)
