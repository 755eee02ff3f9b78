#!/usr/bin/env python3
"""W6: N concurrent ``await client.submit()`` from one asyncio client (gathered, and each in a
Task of its own), side by side with the ways a Python program can run the same N jobs: the sync
loop, ``submit_many``, a thread pool around ``do_normal``, and aiogear (the pure-asyncio Gearman
library) when it is installed. Two raw-C echo workers (benchmarks/c/gmbench.c) serve every
mode; gearmand is fresh per measurement. Reports jobs/s and client CPU per job (the client
process's own CPU, measured around the timed part), medians of --repeat interleaved runs.

    python benchmarks/aio_bench.py                 # 10,000 jobs, 5 repeats
    python benchmarks/aio_bench.py --n 2000 --repeat 3
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

HERE = Path(__file__).resolve().parent


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_c(tmp: Path) -> str:
    exe = tmp / "gmbench"
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        sys.exit("needs gcc for the C echo workers")
    subprocess.run([gcc, "-O2", str(HERE / "c" / "gmbench.c"), "-o", str(exe), "-lgearman"],
                   check=True)
    return str(exe)


def mode_async(address: str, fn: str, n: int) -> Tuple[float, float]:
    from pygearman.aio import AsyncClient

    async def main() -> Tuple[float, float]:
        async with AsyncClient(address, timeout=60) as c:
            await c.submit(fn, b"warm")
            t0, c0 = time.perf_counter(), cpu()
            out = await asyncio.gather(*(c.submit(fn, b"x" * 64) for _ in range(n)))
            t1, c1 = time.perf_counter(), cpu()
            assert len(out) == n and out[0] == b"x" * 64
            return t1 - t0, c1 - c0
    return asyncio.run(main())


def mode_async_tasks(address: str, fn: str, n: int) -> Tuple[float, float]:
    """The same jobs, each awaited by a coroutine of its own (a Task per call, as a server
    handling one request per task would)."""
    from pygearman.aio import AsyncClient

    async def main() -> Tuple[float, float]:
        async with AsyncClient(address, timeout=60) as c:
            async def one() -> bytes:
                return await c.submit(fn, b"x" * 64)

            await one()
            t0, c0 = time.perf_counter(), cpu()
            out = await asyncio.gather(*(one() for _ in range(n)))
            t1, c1 = time.perf_counter(), cpu()
            assert len(out) == n and out[0] == b"x" * 64
            return t1 - t0, c1 - c0
    return asyncio.run(main())


def mode_threads(address: str, fn: str, n: int) -> Tuple[float, float]:
    import threading

    from pygearman import GearmanClient

    local = threading.local()

    def one(_: int) -> bytes:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = GearmanClient(address, timeout=60)
        return c.do_normal(fn, b"x" * 64)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(32)))
        t0, c0 = time.perf_counter(), cpu()
        out = list(pool.map(one, range(n)))
        t1, c1 = time.perf_counter(), cpu()
    assert len(out) == n
    return t1 - t0, c1 - c0


def mode_many(address: str, fn: str, n: int) -> Tuple[float, float]:
    from pygearman import GearmanClient

    with GearmanClient(address, timeout=60) as c:
        c.do_normal(fn, b"warm")
        t0, c0 = time.perf_counter(), cpu()
        out = c.submit_many(fn, [b"x" * 64] * n)
        t1, c1 = time.perf_counter(), cpu()
    assert len(out) == n
    return t1 - t0, c1 - c0


def mode_loop(address: str, fn: str, n: int) -> Tuple[float, float]:
    from pygearman import GearmanClient

    with GearmanClient(address, timeout=60) as c:
        c.do_normal(fn, b"warm")
        t0, c0 = time.perf_counter(), cpu()
        for _ in range(n):
            c.do_normal(fn, b"x" * 64)
        t1, c1 = time.perf_counter(), cpu()
    return t1 - t0, c1 - c0


def mode_aiogear(address: str, fn: str, n: int) -> Tuple[float, float]:
    import aiogear  # type: ignore[import-not-found]

    host, port = address.split(":")

    async def main() -> Tuple[float, float]:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(aiogear.Client, host, int(port))

        async def one() -> Any:
            created = await client.submit_job(fn, b"x" * 64)
            return await client.wait_job(created.handle)

        await one()
        t0, c0 = time.perf_counter(), cpu()
        out = await asyncio.gather(*(one() for _ in range(n)))
        t1, c1 = time.perf_counter(), cpu()
        assert len(out) == n
        return t1 - t0, c1 - c0
    return asyncio.run(main())


MODES: Dict[str, Callable[[str, str, int], Tuple[float, float]]] = {
    "asyncio submit (pygearman.aio)": mode_async,
    "asyncio submit (a Task per call)": mode_async_tasks,
    "ThreadPoolExecutor(16) + do_normal": mode_threads,
    "submit_many (sync)": mode_many,
    "do_normal loop (sync)": mode_loop,
    "aiogear": mode_aiogear,
}


def child(mode: str, address: str, fn: str, n: int) -> None:
    elapsed, used = MODES[mode](address, fn, n)
    print(json.dumps({"elapsed": elapsed, "cpu": used}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, address, fn, n = args.child
        child(mode, address, fn, int(n))
        return
    from pygearman.testing import GearmandServer

    modes = [m for m in args.modes.split(",") if m]
    if "aiogear" in modes:
        try:
            import aiogear  # noqa: F401
        except ImportError:
            print("aiogear is not installed (pip install aiogear): left out", file=sys.stderr)
            modes.remove("aiogear")
    results: Dict[str, List[Tuple[float, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_c(Path(tmp))
        for rep in range(args.repeat):
            for mode in modes:
                with GearmandServer() as g:
                    host, port = g.address.split(":")
                    workers = [subprocess.Popen([exe, "worker", "echo", host, port, "echo", "0"],
                                                stdout=subprocess.DEVNULL)
                               for _ in range(2)]
                    try:
                        time.sleep(0.3)
                        out = subprocess.run([sys.executable, __file__, "--child", mode, g.address,
                                              "echo", str(args.n)], capture_output=True, text=True,
                                             timeout=600)
                        if out.returncode != 0:
                            print(f"{mode}: failed: {out.stderr[-400:]}", file=sys.stderr)
                            continue
                        r = json.loads(out.stdout.strip().splitlines()[-1])
                        results[mode].append((r["elapsed"], r["cpu"]))
                        print(f"[{rep + 1}/{args.repeat}] {mode:38} {args.n / r['elapsed']:9,.0f} "
                              f"jobs/s {r['cpu'] / args.n * 1e6:7.1f} µs CPU/job", flush=True)
                    finally:
                        for w in workers:
                            w.kill()
                            w.wait()
    print(f"\nW6: {args.n} jobs, 2 C echo workers, medians of {args.repeat}")
    print(f"| mode | jobs/s | client CPU µs/job |\n|---|---:|---:|")
    for mode, rs in results.items():
        if not rs:
            continue
        rate = statistics.median(args.n / e for e, _ in rs)
        c = statistics.median(u / args.n * 1e6 for _, u in rs)
        print(f"| {mode} | {rate:,.0f} | {c:.1f} |")


if __name__ == "__main__":
    main()
