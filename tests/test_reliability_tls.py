"""TLS: ssl=True is refused with advice (Debian's libgearman 1.1.20 has no TLS and would talk
plaintext: docs/libgearman-1.1.20.md#tls-plaintext)."""
from __future__ import annotations

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker


def test_ssl_true_is_refused_with_advice() -> None:
    if pygearman.has("ssl"):
        pytest.skip("this libgearman has TLS")
    for cls in (GearmanClient, GearmanWorker):
        with pytest.raises(pygearman.NotSupportedError) as info:
            cls("127.0.0.1:1", ssl=True)
        msg = str(info.value)
        assert "TLS" in msg and "stunnel" in msg, msg
