"""Command line: ``python -m pygearman demo`` (and ``pygearman demo``)."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pygearman", description="Gearman client and worker tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the seed's example: gearmand + worker + client")
    demo.add_argument("--servers", help="use these job servers (host:port,...) instead of "
                                        "starting a local gearmand")
    sub.add_parser("version", help="print pygearman's and libgearman's versions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from pygearman.demo import run_demo

        servers = args.servers.split(",") if args.servers else None
        try:
            return run_demo(servers)
        except KeyboardInterrupt:
            return 130
    if args.command == "version":
        import pygearman

        print(f"pygearman {pygearman.__version__} (libgearman {pygearman.libgearman_version()})")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
