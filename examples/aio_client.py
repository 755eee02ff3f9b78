"""asyncio client: one job, then a task set collected as the jobs finish.

    python examples/aio_client.py [host:port]     (run examples/worker.py or aio_worker.py first)
"""
import asyncio
import sys

from pygearman.aio import AsyncClient


async def main() -> None:
    async with AsyncClient(sys.argv[1:] or None, timeout=30) as client:
        print((await client.submit("title", "AlL THE World's a sTagE")).decode())

        ts = client.task_set()
        for i, line in enumerate(["to be, or not to be", "THAT IS THE QUESTION"]):
            ts.add("title", line, context=i)
        async for task in ts.as_completed():
            print(f"line {task.context}: {task.result().decode()}")

        # a slow call can be abandoned: the coroutine gets CancelledError at once
        try:
            await asyncio.wait_for(client.submit("title", "quick", timeout=5), 10)
        except asyncio.TimeoutError:
            print("gave up")


if __name__ == "__main__":
    asyncio.run(main())
