"""The seed's client.php in Python: a synchronous call to `title`.

    python examples/client.py [host:port]
"""
import sys

from pygearman import GearmanClient


def main() -> None:
    with GearmanClient(sys.argv[1:] or None, timeout=30) as client:
        print(client.do_normal("title", "AlL THE World's a sTagE").decode())


if __name__ == "__main__":
    main()
