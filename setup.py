"""The forwarder's one native part: the CA event queue (issue 11). Everything else is in
pyproject.toml; setuptools reads this only for the extension, which needs a C compiler and
Python's headers (Debian: gcc, python3-dev)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "forwarder.sources._ca_queue",
            ["forwarder/sources/_ca_queue.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
