# The forwarder image.
#
# With a registry: `docker build -t forwarder .` (base python:3.11-slim, deps from PyPI).
# Air-gapped (the rig's way): docker/build_images.sh builds a Debian base with debootstrap and
# wheels on the host, then builds this with --build-arg BASE_IMAGE=forwarder-rig/debian-base:bookworm.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS base
# Images carry org.forwarder-rig.image (what `helpers.rig.docker.clean --images` removes), never the
# suite label: a container is the suite's only when the rig labels it at run time.
LABEL org.forwarder-rig.image=1

RUN python3 -m venv /opt/forwarder
ENV PATH=/opt/forwarder/bin:$PATH PYTHONUNBUFFERED=1

# Dependencies first, so a change of the forwarder's code reuses this layer. The wildcard
# copies docker/wheels/forwarder/ when build_wheels.py made it (then pip stays offline);
# without it build_wheels.py names the same set (the pins of pyproject.toml, and a
# setuptools>=70.1 whose own bdist_wheel lets the forwarder install from source below
# without a download) and pip fetches it from PyPI.
COPY pyproject.toml /src/pyproject.toml
COPY docker/build_wheels.py /src/docker/build_wheels.py
COPY docker/wheels/.gitignore docker/wheels/forwarde[r] /wheels/
RUN if [ -f /wheels/requirements.txt ]; then \
        pip install --no-cache-dir --no-index --find-links /wheels -r /wheels/requirements.txt; \
    else \
        python3 /src/docker/build_wheels.py --print forwarder > /tmp/requirements.txt \
        && pip install --no-cache-dir -r /tmp/requirements.txt; \
    fi \
    && rm -rf /wheels

# The forwarder's native CA queue (setup.py) needs a C compiler and Python's headers: it is
# built in a stage of its own, so the image carries the built wheel and not the compiler.
FROM base AS native
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev python3-dev \
    && rm -rf /var/lib/apt/lists/*
COPY setup.py /src/setup.py
COPY forwarder/ /src/forwarder/
RUN pip wheel --no-cache-dir --no-deps --no-index --no-build-isolation --wheel-dir /dist /src

FROM base
COPY --from=native /dist/ /dist/
RUN pip install --no-cache-dir --no-deps --no-index /dist/*.whl \
    && rm -rf /dist /src /tmp/* \
    && python3 -c "import forwarder.sources._ca_queue" \
    && forwarder --help > /dev/null

ENTRYPOINT ["forwarder"]
