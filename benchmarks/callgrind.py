#!/usr/bin/env python3
"""Instructions per job of one worker or client process under callgrind, split by where they run.

    python benchmarks/callgrind.py                      # C, pygearman; W4 drain and sleeping path
    python benchmarks/callgrind.py --impls c,pygearman,old --old-python /tmp/oldvenv/bin/python
    python benchmarks/callgrind.py --n 1000,5000 --paths drain
    python benchmarks/callgrind.py --paths bg-loop,bg-batch --n 2000,6000   # W1's clients

The worker is the benchmark driver (benchmarks/c/gmbench.c, drivers/py_pygearman.py) in its
``drain`` mode, run under ``valgrind --tool=callgrind``; gearmand and the client are not. Two paths:

* ``drain`` (W4): the queue holds N jobs before the worker starts, so it never sleeps.
* ``sleep`` (W2's worker): the queue is empty; a client (this script, pygearman's ``do_normal``)
  sends N jobs one round trip at a time and pauses ``--pause-ms`` (1 ms) after each, so the worker
  always goes to sleep (GRAB_JOB -> NO_JOB, PRE_SLEEP, poll) and is woken (NOOP) for every job.
  Without the pause the next job can reach gearmand before the slowed-down worker asks again, and
  the share of jobs taken without sleeping (hence the cost) changes from run to run.

Two more paths measure a client instead (W1: background submits, no worker):

* ``bg-loop``: one ``do_background`` (C: ``gearman_client_do_background``) per job.
* ``bg-batch``: ``submit_background_many`` in batches of 1000 (C: ``add_task_background`` and
  ``run_tasks``).

Each case runs at two job counts; per job = (cost at N2 - cost at N1) / (N2 - N1), which removes
start-up, imports and teardown. The split is by ELF object of the instruction (self cost): the
pygearman extension module, libgearman, the interpreter (libpython or the python binary), libc,
the dynamic loader and the rest. Syscalls run in the kernel and are not counted by callgrind; the
syscall pass of run.py counts them. A few named functions are also given with their inclusive
cost (the GIL hand-over: PyEval_SaveThread/PyEval_RestoreThread).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

HERE = Path(__file__).resolve().parent
os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

from pygearman.testing import GearmandServer  # noqa: E402

INCLUSIVE = ("PyEval_SaveThread", "PyEval_RestoreThread", "take_gil", "drop_gil",
             "gearman_worker_work", "gearman_worker_grab_job", "_refresh_signal_policy")
# path -> the client driver's mode (the others run a worker)
CLIENT_PATHS = {"bg-loop": "bg_loop", "bg-batch": "bg_batch"}
# Runs every 2 s of wall-clock time, not per job: under callgrind (~50x slower) it lands on far
# fewer jobs than in a real run, so it is reported apart and taken out of the per-job totals.
TIMED = "_refresh_signal_policy"


def category(obj: str) -> str:
    name = os.path.basename(obj)
    if name == "gmbench":
        return "C driver"
    if name.startswith("_libgearman"):
        return "pygearman module"
    if name.startswith("libgearman"):
        return "libgearman"
    if name.startswith("libpython") or re.fullmatch(r"python3(\.\d+)?", name):
        return "CPython"
    if name.startswith("libc.") or name.startswith("libc-"):
        return "libc"
    if name.startswith("ld-linux"):
        return "ld.so"
    if name.endswith(".so") or ".so." in name:
        return "other libraries"
    return "other"


def parse(path: Path) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Self cost (Ir) per object category; inclusive cost of the INCLUSIVE functions, and of
    every call that leaves the pygearman module or libgearman for another object (keyed
    "caller category -> callee category: function"): what the binding asks of CPython, libc, etc."""
    names: Dict[Tuple[str, str], str] = {}

    def resolve(kind: str, val: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?$", val)
        if not m:
            return val
        if m.group(2) is not None:
            names[(kind, m.group(1))] = m.group(2)
            return m.group(2)
        return names.get((kind, m.group(1)), "?")

    by_obj: Dict[str, int] = defaultdict(int)
    incl: Dict[str, int] = defaultdict(int)
    ob = cob = fn = cfn = ""
    skip_next = False
    cross = ""
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if skip_next:  # the inclusive cost of a call: counts toward the caller's inclusive
                    skip_next = False
                    if fn in INCLUSIVE:
                        incl[fn] += cost
                    if cross:
                        incl[cross] += cost
                    continue
                by_obj[ob] += cost
                if fn in INCLUSIVE:
                    incl[fn] += cost
                continue
            key, _, val = line.partition("=")
            if key == "ob":
                ob = resolve("ob", val)
            elif key == "fn":
                fn = resolve("fn", val).split("'")[0]
                if fn.endswith(TIMED):  # Cython's mangled name
                    fn = TIMED
                cob = ""
            elif key == "cob":
                cob = resolve("ob", val)
            elif key == "cfn":
                cfn = resolve("fn", val).split("'")[0]
            elif key in ("cfi", "cfl"):
                resolve("fl", val)
            elif key in ("fl", "fi", "fe"):
                resolve("fl", val)
            elif key == "calls":
                skip_next = True
                a, b = category(ob), category(cob or ob)
                cross = f"{a} -> {b}: {cfn}" if a != b and a in ("pygearman module", "libgearman") else ""
                cob = ""
    cats: Dict[str, int] = defaultdict(int)
    for obj, cost in by_obj.items():
        cats[category(obj)] += cost
    return dict(cats), dict(incl)


def run_case(exe: List[str], path: str, n: int, c_exe: str, tmp: Path, tag: str, pause: float) -> Path:
    out = tmp / f"callgrind.{tag}.{path}.{n}"
    with GearmandServer(threads=1) as g:
        host, port = g.host, str(g.port)
        fn = "cg"
        if path in CLIENT_PATHS:
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *exe,
                            "client", CLIENT_PATHS[path], host, port, fn, str(n), "32", "1000"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return out
        if path == "drain":
            subprocess.run([c_exe, "client", "bg_batch_uniq", host, port, fn, str(n), "64", "1000"],
                           check=True, stdout=subprocess.DEVNULL)
        w = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              *exe, "worker", "drain", host, port, fn, str(n)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if path == "sleep":
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # registered (under valgrind start-up is slow)
                lines = [x.split("\t") for x in g.admin("status").splitlines()]
                if any(len(p) == 4 and p[0] == fn and int(p[3]) > 0 for p in lines):
                    break
                time.sleep(0.2)
            from pygearman import GearmanClient
            with GearmanClient(g.address) as c:
                for _ in range(n):
                    c.do_normal(fn, b"x" * 64)
                    time.sleep(pause)
        w.wait(timeout=3600)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impls", default="c,pygearman", help="c, pygearman, old (needs --old-python)")
    ap.add_argument("--old-python", default="")
    ap.add_argument("--paths", default="drain,sleep",
                    help="drain, sleep (a worker), bg-loop, bg-batch (a client)")
    ap.add_argument("--n", default="1000,5000", help="the two job counts N1,N2")
    ap.add_argument("--pause-ms", type=float, default=1.0, help="client pause between jobs (sleep path)")
    args = ap.parse_args()
    n1, n2 = (int(x) for x in args.n.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="pygearman-callgrind-"))
    c_exe = str(tmp / "gmbench")
    subprocess.run([shutil.which("gcc") or "cc", "-O2", "-g", str(HERE / "c" / "gmbench.c"), "-o", c_exe,
                    "-lgearman"], check=True)
    driver = str(HERE / "drivers" / "py_pygearman.py")
    cmds = {"c": [c_exe], "pygearman": [sys.executable, driver], "old": [args.old_python, driver]}
    rows = []
    for path in args.paths.split(","):
        for impl in args.impls.split(","):
            costs = []
            for n in (n1, n2):
                t0 = time.time()
                f = run_case(cmds[impl], path, n, c_exe, tmp, impl, args.pause_ms / 1000)
                costs.append(parse(f))
                print(f"  {impl} {path} N={n}: {time.time() - t0:.0f} s", file=sys.stderr)
            (c1, i1), (c2, i2) = costs
            per = {k: (c2.get(k, 0) - c1.get(k, 0)) / (n2 - n1) for k in set(c1) | set(c2)}
            inc = {k: (i2.get(k, 0) - i1.get(k, 0)) / (n2 - n1) for k in set(i1) | set(i2)}
            # the time-based refresh is almost all CPython (signal.getsignal x 64): out of that column
            per["CPython"] = per.get("CPython", 0) - inc.get(TIMED, 0)
            rows.append((path, impl, per, inc))
    cats = ["pygearman module", "libgearman", "CPython", "libc", "ld.so", "C driver", "other libraries", "other"]
    cats = [c for c in cats if any(abs(r[2].get(c, 0)) >= 0.5 for r in rows)]
    print(f"\nInstructions per job (callgrind Ir, (N={n2} - N={n1}) / {n2 - n1}), self cost by object, "
          f"without {TIMED} (every 2 s, see the inclusive table):\n")
    print("| path | process | total | " + " | ".join(cats) + " |")
    print("|---|---|---:|" + "---:|" * len(cats))
    for path, impl, per, _ in rows:
        print(f"| {path} | {impl} | {sum(per.values()):,.0f} | "
              + " | ".join(f"{per.get(c, 0):,.0f}" for c in cats) + " |")
    print("\nCalls out of the pygearman module and libgearman, inclusive instructions per job (>= 20):\n")
    for path, impl, _, inc in rows:
        outs = sorted(((k, x) for k, x in inc.items() if " -> " in k and x >= 20), key=lambda kv: -kv[1])
        print(f"* {path}, {impl}: " + "; ".join(f"{k} {x:,.0f}" for k, x in outs))
    print("\nInclusive cost per job of named functions:\n")
    print("| path | process | " + " | ".join(INCLUSIVE) + " |")
    print("|---|---|" + "---:|" * len(INCLUSIVE))
    for path, impl, _, inc in rows:
        print(f"| {path} | {impl} | " + " | ".join(f"{inc.get(k, 0):,.0f}" for k in INCLUSIVE) + " |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
