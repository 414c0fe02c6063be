"""Robustness figures: bad inputs refused in one line, fuzzed readers, kill -9 at random points.

Runs the bad-input tables (``tests/unit/test_bad_inputs.py``, ``tests/unit/test_io_errors.py``), the
hypothesis fuzz tests with more examples than ``make test`` (``--examples`` per reader, random seeds) and the
kill loop of ``tests/integration/test_kill_points.py`` with more kill points, then writes
``benchmarks/results/robustness_inputs.json``:

    bad inputs tried / passed, fuzz cases run / failures (per reader), kill points tried / losses found.

Usage: ``flock /tmp/wb-bench.lock .venv/bin/python benchmarks/bench_robustness.py [--examples 200]
[--kills 40 8 20 20]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "robustness_inputs.json"


class Outcomes:
    """A pytest plugin counting test outcomes (the call phase; a setup error counts as a failure)."""

    def __init__(self):
        self.passed, self.failed, self.failures = 0, 0, []

    def pytest_runtest_logreport(self, report):
        if report.when == "call" and report.passed:
            self.passed += 1
        elif report.failed:
            self.failed += 1
            self.failures.append(report.nodeid)


def run_pytest(paths: list[str], extra: list[str] | None = None) -> Outcomes:
    import pytest

    out = Outcomes()
    pytest.main([*paths, "-q", "-p", "no:cacheprovider", "--no-header", *(extra or [])],
                plugins=[out])
    return out


def bad_inputs() -> dict:
    t0 = time.time()
    res = run_pytest(["tests/unit/test_bad_inputs.py", "tests/unit/test_io_errors.py"])
    return {"tried": res.passed + res.failed, "passed": res.passed, "failed": res.failures,
            "seconds": round(time.time() - t0, 1),
            "what": "one test per bad input (CLI: exit code 2, one line naming the file, nothing half-written; "
                    "app forms: one-line WorkbenchError), plus files changing while read and a full disk "
                    "(a 192 kB tmpfs in a private mount namespace, and ENOSPC raised from the writes)"}


def fuzz(examples: int) -> dict:
    os.environ["FUZZ_EXAMPLES"] = str(examples)
    os.environ["FUZZ_RANDOM"] = "1"
    t0 = time.time()
    res = run_pytest(["tests/unit/test_fuzz_readers.py"], ["-p", "no:warnings"])
    mod = next(m for name, m in sys.modules.items() if name.endswith("test_fuzz_readers") and hasattr(m, "SEEN"))
    per_reader = {k: {"examples": v[0], "read": v[1], "refused_in_one_line": v[2]} for k, v in mod.SEEN.items()}
    return {"examples_per_test": examples, "cases_run": sum(v[0] for v in mod.SEEN.values()),
            "tests_passed": res.passed, "failures": res.failures, "per_reader": per_reader,
            "seconds": round(time.time() - t0, 1)}


def kill_points(kills: dict[str, int]) -> dict:
    spec = importlib.util.spec_from_file_location("kill_points", REPO / "tests" / "integration" / "test_kill_points.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    out = {}
    for mode, n in kills.items():
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix="wbkill-") as d:
            delay = mod.TEST_KILLS[mode][1]
            loop = mod.kill_loop(Path(d) / "p", mode, n, max_delay=delay, seed=1234)
        out[mode] = {"kill_points": loop.kills, "acknowledged_writes_checked": loop.acks,
                     "losses": len(loop.losses), "lost": loop.losses[:20], "max_delay_s": delay,
                     "seconds": round(time.time() - t0, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200, help="hypothesis examples per fuzz test")
    ap.add_argument("--kills", type=int, nargs=4, default=(40, 8, 20, 20),
                    metavar=("ANNOTATE", "CHECKPOINT", "SEGMENT", "MESH"))
    ap.add_argument("--note", default="", help="how this run was made (kept in the JSON)")
    args = ap.parse_args()
    os.chdir(REPO)
    load_before = os.getloadavg()
    t0 = time.time()
    result = {"benchmark": "bench_robustness", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": " ".join(sys.argv), "note": args.note, "cpus": os.cpu_count(),
              "load_average_before": [round(v, 2) for v in load_before]}
    result["bad_inputs"] = bad_inputs()
    result["fuzz"] = fuzz(args.examples)
    result["kill_points"] = kill_points(dict(zip(("annotate", "checkpoint", "segment", "mesh"), args.kills)))
    kp = result["kill_points"]
    result["summary"] = {
        "bad_inputs_tried": result["bad_inputs"]["tried"], "bad_inputs_passed": result["bad_inputs"]["passed"],
        "fuzz_cases_run": result["fuzz"]["cases_run"], "fuzz_failures": len(result["fuzz"]["failures"]),
        "kill_points_tried": sum(v["kill_points"] for v in kp.values()),
        "kill_losses_found": sum(v["losses"] for v in kp.values()),
    }
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    result["seconds"] = round(time.time() - t0, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
