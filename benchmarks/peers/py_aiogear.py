"""Benchmark driver for aiogear (PyPI ``aiogear``), the pure-asyncio Gearman client: W6 only.

Runs in the harness's own venv (aiogear does not clash with our package): ``pip install
aiogear==0.2.6``. Usage and output: see ../drivers/_common.py. Only the client mode ``aio`` is
measured (N concurrent ``submit_job`` + ``wait_job`` through asyncio.gather, as aio_bench.py does);
every other mode reports "n/a". aiogear makes a random unique per job (uuid4) itself.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "drivers"))
import _common  # noqa: E402
from _common import Args, Timer, finish, not_available  # noqa: E402

try:
    import aiogear
except ImportError as e:
    print(f"cannot import aiogear: {e} (pip install aiogear==0.2.6)", file=sys.stderr)
    sys.exit(2)


def version() -> Dict[str, Any]:
    from importlib.metadata import version as dist_version
    return {"aiogear": dist_version("aiogear"), "python": sys.version.split()[0]}


def client(a: Args) -> None:
    if a.mode != "aio":
        not_available("only the asyncio workload (W6-aio) is measured for aiogear")
    p = _common.payload(a.size)

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        _, c = await loop.create_connection(aiogear.Client, a.host, a.port)

        async def one(data: bytes) -> Any:
            created = await c.submit_job(a.function, data)
            return await c.wait_job(created.handle)

        await one(b"warm")
        with Timer() as t:
            out = await asyncio.gather(*(one(p) for _ in range(a.n)))
        ok = sum(1 for r in out if len(getattr(r, "result", b"") or b"") == a.size)
        return t, ok, out[0]

    t, ok, first = asyncio.run(main())
    finish(a, ok, t, "Client.submit_job + wait_job x N, asyncio.gather")


def worker(a: Args) -> None:
    not_available("aiogear is measured as a client only (W6)")


if __name__ == "__main__":
    _common.run_driver(version, client, worker)
