"""The benchmark harness runs end to end on tiny N (no timing assertions; no peer venv, no network)."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pygearman.testing import GearmandNotFound, find_gearmand

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
IMPLS = ["pygearman", "c", "php"]   # the pure-Python peers need a pip-installed venv: not in CI
WORKLOADS = ["W1-loop", "W1-batch", "W1-batch-uniq", "W2", "W3-tasks", "W3-tasks-uniq", "W3-many",
             "W3-many-uniq", "W4", "W5"]


@pytest.mark.timeout(300)
def test_quick_benchmark_run(tmp_path: Path) -> None:
    if not RUN.exists():
        pytest.skip("benchmarks/ is not part of this checkout")
    try:
        find_gearmand()
    except GearmandNotFound as e:
        pytest.skip(str(e))
    out = tmp_path / "results"
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    proc = subprocess.run(
        [sys.executable, str(RUN), "--impls", ",".join(IMPLS), "--workloads", "W1,W2,W3,W4,W5",
         "--scale", "0.002", "--repeat", "1", "--timeout", "120", "--no-plot", "--out", str(out),
         "--peers-venv", str(tmp_path / "no-peers-venv")],
        capture_output=True, text=True, timeout=280, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, f"run.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert not (tmp_path / "no-peers-venv").exists(), "the peers venv must only be made for peer impls"

    data = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("# pygearman benchmarks")
    meta = data["meta"]
    assert meta["versions"]["pygearman"] and meta["versions"]["libgearman (pygearman runtime)"]

    by_key = {(m["impl"], m["variant"]): m for m in data["measurements"]}
    assert set(by_key) == {(i, w) for i in IMPLS for w in WORKLOADS}
    attempted = 0
    for (impl, variant), m in sorted(by_key.items()):
        reason = meta["impls"][impl]["unavailable"]
        if reason:  # e.g. no php-cli here: not attempted
            assert m["status"] == "n/a" and impl != "pygearman", (impl, reason)
            continue
        if m["status"] == "n/a":
            # W3-many(-uniq) is a pygearman-only API; otherwise only a batch/task API that the
            # installed build lacks may be "not available"
            assert variant.startswith("W3-many") and impl != "pygearman" or (
                impl == "pygearman" and variant.startswith(("W1-batch", "W3"))), m
            continue
        attempted += 1
        assert m["status"] == "ok", f"{impl} {variant}: {m['error']}"
        assert isinstance(m["rate"], float) and math.isfinite(m["rate"]) and m["rate"] > 0, m
        assert m["elapsed"] > 0 and m["n"] >= 1, m
        if m["variant"] in ("W2", "W5"):
            assert m["lat_p50_us"] > 0 and m["lat_p99_us"] >= m["lat_p50_us"], m
        s = data["summary"][variant][impl]
        assert s["median"] == pytest.approx(m["rate"]), s
    if shutil.which("gcc") and not meta["impls"]["c"]["unavailable"]:
        assert data["summary"]["W2"]["pygearman"]["vs_c"] > 0
    assert attempted >= len(WORKLOADS) - 3
