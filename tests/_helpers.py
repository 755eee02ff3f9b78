"""Small helpers shared by test modules (not fixtures)."""
from __future__ import annotations

from pathlib import Path

from pygearman.testing import GearmandServer


def write(tmp_path: Path, name: str, text: str) -> str:
    """Write a file (a PHP script, a child Python script...) and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def available_workers(server: GearmandServer, fn: str) -> int:
    """Workers registered for fn, from the admin 'status' command."""
    for line in server.admin("status").splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == fn:
            return int(parts[3])
    return 0
