"""End-to-end benchmark of forwarder builds on the real rig (``nox -s bench``).

A benchmark, not a test: it runs fixed measurement windows on purpose and reports figures;
it never fails on a slow result.
"""
