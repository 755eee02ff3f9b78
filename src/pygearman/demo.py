"""The seed's example, end to end: a local gearmand, a worker with `title`, and a client."""
from __future__ import annotations

import re
import sys
import threading
import time
from typing import List, Optional, TextIO

from pygearman.client import GearmanClient
from pygearman.worker import GearmanJob, GearmanWorker

__all__ = ["ucwords", "title_function", "title_lines_function", "run_demo"]

_WORD_START = re.compile(r"(^|[ \t\r\n\f\v])([^ \t\r\n\f\v])")


def ucwords(text: str) -> str:
    """PHP's ucwords(): upper-case the first character of each blank-separated word."""
    return _WORD_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def title_function(job: GearmanJob) -> str:
    """The seed's worker: ``return ucwords(strtolower($job->workload()));``"""
    return ucwords(job.workload.decode("utf-8").lower())


def title_lines_function(job: GearmanJob) -> str:
    """A slower `title` for background jobs: one line at a time, reporting progress."""
    lines = job.workload.decode("utf-8").splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        out.append(ucwords(line.lower()))
        job.send_status(i, len(lines))
        time.sleep(0.2)
    return "\n".join(out)


def run_demo(servers: Optional[List[str]] = None, out: TextIO = sys.stdout) -> int:
    """Run the demo; returns a process exit status."""
    server = None
    if not servers:
        from pygearman.testing import GearmandServer

        server = GearmandServer().start()
        servers = [server.address]
        print(f"[demo] started gearmand {server.address} (pid {server.pid})", file=out)
    worker = GearmanWorker(servers)
    worker.add_function("title", title_function)
    worker.add_function("title_lines", title_lines_function)
    thread = threading.Thread(target=worker.run, name="demo-worker", daemon=True)
    thread.start()
    print(f"[demo] worker registered {worker.functions} on {', '.join(servers)}", file=out)
    try:
        with GearmanClient(servers, timeout=30) as client:
            print("[demo] synchronous: client.do_normal('title', \"AlL THE World's a sTagE\")",
                  file=out)
            print(client.do_normal("title", "AlL THE World's a sTagE").decode(), file=out)

            text = "\n".join(["aLL the world's a stage,", "AND ALL the men and women merely players;",
                              "they have their EXITS and their entrances"])
            handle = client.do_background("title_lines", text)
            print(f"[demo] background: do_background('title_lines', ...) -> {handle}", file=out)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                st = client.job_status(handle)
                if not st.known:
                    print("[demo] background job finished", file=out)
                    break
                print(f"[demo]   status: known={st.known} running={st.running} "
                      f"{st.numerator}/{st.denominator}", file=out)
                time.sleep(0.15)
            else:
                print("[demo] background job did not finish in 30 s", file=out)
                return 1
    finally:
        worker.stop()
        thread.join(10)
        worker.close()
        if server is not None:
            server.cleanup()
            print("[demo] stopped gearmand", file=out)
    return 0
