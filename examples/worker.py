"""The seed's worker.php in Python: registers `title` and processes jobs until Ctrl-C.

    python examples/worker.py [host:port]
"""
import sys

from pygearman import GearmanJob, GearmanWorker


def title_function(job: GearmanJob) -> str:
    # PHP: return ucwords(strtolower($job->workload()));
    return " ".join(w[:1].upper() + w[1:] for w in job.workload.decode().lower().split(" "))


def main() -> None:
    with GearmanWorker(sys.argv[1:] or None) as worker:  # default: $GEARMAN_SERVERS or 127.0.0.1:4730
        worker.add_function("title", title_function)
        try:
            worker.run()  # PHP: while ($worker->work());
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
