"""An asyncio worker: `title` as an `async def`, served with AsyncWorker until Ctrl-C/SIGTERM.

    python examples/aio_worker.py [host:port]
"""
import asyncio
import signal
import sys

from pygearman.aio import AsyncJob, AsyncWorker


async def title(job: AsyncJob) -> str:
    await job.send_status(0, 1)
    await asyncio.sleep(0.01)          # stands for an awaitable call (HTTP, database, ...)
    return " ".join(w[:1].upper() + w[1:] for w in job.workload.decode().lower().split(" "))


async def main() -> None:
    worker = AsyncWorker(sys.argv[1:] or None, concurrency=4)   # up to 4 jobs at once
    worker.add_function("title", title)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)      # finish the jobs in hand, then return
    jobs = await worker.run()
    print(f"processed {jobs} jobs")


if __name__ == "__main__":
    asyncio.run(main())
