"""The three ways a client hands work to Gearman, in one program (the documentation's tutorial).

    python examples/three_modes.py              starts a private gearmand (needs gearmand installed)
    python examples/three_modes.py HOST:PORT    uses that job server

A worker runs in a thread of this process, so nothing else has to be started.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator

from pygearman import GearmanClient, GearmanJob, GearmanWorker
from pygearman.testing import GearmandServer


def title(job: GearmanJob) -> str:
    """Capitalise every word, as the PHP tutorial's ucwords(strtolower(...)) does."""
    words = job.workload.decode().lower().split(" ")
    return " ".join(w[:1].upper() + w[1:] for w in words)


def slow_title(job: GearmanJob) -> str:
    """The same, slowly, telling the job server how far it got after each word."""
    words = job.workload.decode().split(" ")
    for done in range(len(words)):
        job.send_status(done, len(words))
        time.sleep(0.05)
    return title(job)


@contextlib.contextmanager
def worker_in_a_thread(server: str) -> Iterator[GearmanWorker]:
    """A worker serving both functions until the block ends."""
    worker = GearmanWorker(server)
    worker.add_function("title", title)
    worker.add_function("slow_title", slow_title)
    thread = threading.Thread(target=worker.run, name="worker")
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()            # safe from any thread: run() returns after the job in hand
        thread.join()
        worker.close()


def synchronous(client: GearmanClient) -> None:
    """Mode 1: send one job and wait for its result."""
    print(client.do_normal("title", "AlL THE World's a sTagE").decode())
    # the same through the Pythonic front door, with a deadline for this call only
    print(client.submit("title", "to be, or not to be", timeout=10).decode())


def parallel(client: GearmanClient) -> None:
    """Mode 2: send many jobs at once and collect them as they finish."""
    lines = ["whether 'tis nobler", "IN THE MIND", "to suffer the slings"]
    for number, line in enumerate(lines):
        client.add_task("title", line, context=number)       # nothing is sent yet
    with client.as_completed() as finished:                   # now every job is in flight
        for task in finished:
            print(f"line {task.context}: {(task.result or b'').decode()}")
    # one function over many inputs: results in input order, no Python code per job
    print(client.submit_many("title", lines))


def background(client: GearmanClient) -> None:
    """Mode 3: queue a job, go on, and ask the job server about it later."""
    handle = client.do_background("slow_title", "and by opposing end them")
    print("queued", handle)
    while True:
        status = client.job_status(handle)
        if not status.known:               # the server forgets a job once it has finished
            print("done")
            break
        if status.running:
            print(f"running: {status.numerator}/{status.denominator} words")
        time.sleep(0.1)


def tour(server: str) -> None:
    with worker_in_a_thread(server), GearmanClient(server, timeout=30) as client:
        synchronous(client)
        parallel(client)
        background(client)


def main() -> None:
    if len(sys.argv) > 1:
        tour(sys.argv[1])
    else:
        with GearmandServer() as server:      # a gearmand on a free port, stopped afterwards
            tour(server.address)


if __name__ == "__main__":
    main()
