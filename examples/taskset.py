"""Parallel mode (the seed's second mode): a task set, results collected as they finish.

    python examples/taskset.py [host:port]      (run examples/worker.py first)
"""
import sys

from pygearman import GearmanClient, GearmanTask


def main() -> None:
    lines = ["to be, or not to be", "THAT IS THE QUESTION", "whether 'tis nobler"]
    with GearmanClient(sys.argv[1:] or None, timeout=30) as client:

        def done(task: GearmanTask) -> None:
            print(f"line {task.context} finished: {(task.result or b'').decode()}")

        for i, line in enumerate(lines):
            client.add_task("title", line, context=i, on_complete=done)
        tasks = client.run_tasks()
        print([(t.result or b"").decode() for t in tasks])


if __name__ == "__main__":
    main()
