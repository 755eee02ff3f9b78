"""The seed's example, end to end: a local gearmand, a worker with `title`, and a client that
submits in the seed's three ways: synchronous, parallel (a task set) and background."""
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
    # two workers: the seed's point that more workers spread the load
    workers = []
    threads = []
    for n in range(2):
        worker = GearmanWorker(servers, identifier=f"demo-worker-{n + 1}")
        worker.add_function("title", title_function)
        worker.add_function("title_lines", title_lines_function)
        thread = threading.Thread(target=worker.run, name=f"demo-worker-{n + 1}", daemon=True)
        thread.start()
        workers.append(worker)
        threads.append(thread)
    print(f"[demo] 2 workers registered {workers[0].functions} on {', '.join(servers)}", file=out)
    try:
        with GearmanClient(servers, timeout=30) as client:
            print("[demo] synchronous: client.do_normal('title', \"AlL THE World's a sTagE\")",
                  file=out)
            print(client.do_normal("title", "AlL THE World's a sTagE").decode(), file=out)

            print("[demo] parallel: a task set of 4 jobs, results collected as they finish",
                  file=out)
            lines = ["to be, or not to be", "THAT IS THE QUESTION", "whether 'tis nobler",
                     "in the MIND to suffer"]
            for i, line in enumerate(lines):
                client.add_task("title", line, context=i,
                                on_complete=lambda t: print(f"[demo]   task {t.context} done: "
                                                            f"{(t.result or b'').decode()}",
                                                            file=out))
            tasks = client.run_tasks()
            print("[demo]   in order: " + " / ".join((t.result or b"").decode() for t in tasks),
                  file=out)

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
        for worker in workers:
            worker.stop()
        for worker, thread in zip(workers, threads):
            thread.join(10)
            worker.close()
        if server is not None:
            server.cleanup()
            print("[demo] stopped gearmand", file=out)
    return 0
