"""make_source_factories: the three protocols, and no CA/PVA client until they are used."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHECK = textwrap.dedent(
    """
    import sys
    from forwarder.sources import make_source_factories
    from forwarder.update import ConnectionStatus
    from helpers.polling import wait_until

    factories = make_source_factories(fake_period_ms=10)
    assert sorted(factories) == ["CA", "FAKE", "PVA"], sorted(factories)
    got = []
    src = factories["FAKE"].create("F", got.append, lambda s, t: got.append(s))
    src.start()
    wait_until(lambda: len(got) >= 2, timeout=10, what="fake updates")
    src.stop()
    import epics.ca
    assert epics.ca.libca is None, "libca was started"
    # p4p is imported at start (pva.py says why); no client context may exist yet.
    assert factories["PVA"]._context is None, "a PVA client context was made"
    for f in factories.values():
        f.close()
    print("OK")
    """
)


def test_source_factories_are_lazy_about_ca_and_pva():
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr
