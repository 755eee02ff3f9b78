"""Background mode: submit, return at once, then poll the job's status until it is done.

    python examples/background.py [host:port]
"""
import sys
import time

from pygearman import GearmanClient


def main() -> None:
    with GearmanClient(sys.argv[1:] or None, timeout=30) as client:
        handle = client.do_background("title", "this runs while we do something else")
        print("queued", handle)
        while True:
            status = client.job_status(handle)
            if not status.known:  # the server forgets a job once it is done
                print("done")
                break
            print(f"running={status.running} progress={status.numerator}/{status.denominator}")
            time.sleep(0.1)


if __name__ == "__main__":
    main()
