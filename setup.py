"""The forwarder's one native part: the CA event queue (issue 11). Everything else is in
pyproject.toml; setuptools reads this only for the extension, which needs a C compiler and
Python's headers (Debian: gcc, python3-dev). Without them the install goes on without it and
the forwarder says at start that CA runs on its slower ctypes path; the unit tests of the
queue (tests/unit/test_ca_queue.py) fail, so a CI without a compiler does not pass."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "forwarder.sources._ca_queue",
            ["forwarder/sources/_ca_queue.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
