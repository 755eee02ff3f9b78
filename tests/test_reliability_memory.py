"""Memory: RSS growth after warm-up over many jobs, per API (benchmarks/memory.py), a leak check."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from _support.processes import run
from _support.reliability import report, scale


MEMORY_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "memory.py"


@pytest.mark.timeout(240)
def test_rss_does_not_grow_with_jobs() -> None:
    n = scale(20000, 200000)
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin")
    out = run([sys.executable, str(MEMORY_SCRIPT), "--n", str(n), "--json"], timeout=230, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    slack = 2 * 1024 * 1024
    over = []
    for r in doc["results"]:
        allowed = 0.05 * r["rss_after_warmup"] + slack
        report(f"memory[{r['mode']}]", jobs=r["jobs"], rss_after_warmup_mib=r["rss_after_warmup"] / 2**20,
               rss_end_mib=r["rss_end"] / 2**20, growth_mib=r["growth_bytes"] / 2**20,
               growth_pct=r["growth_pct"], bytes_per_job=r["bytes_per_job"])
        if r["growth_bytes"] > allowed:
            over.append((r["mode"], r["growth_bytes"], r["trace"]))
    assert {r["mode"] for r in doc["results"]} == {"sync", "background", "taskset", "submit_many",
                                                    "worker"}
    assert not over, f"RSS grew beyond 5% + 2 MiB after warm-up: {over}"
