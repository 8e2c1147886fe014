# The forwarder image.
#
# With a registry: `docker build -t forwarder .` (base python:3.11-slim, deps from PyPI).
# Air-gapped (the rig's way): docker/build_images.sh builds a Debian base with debootstrap and
# wheels on the host, then builds this with --build-arg BASE_IMAGE=forwarder-rig/debian-base:bookworm.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
# Images carry org.forwarder-rig.image (what `docker_clean --images` removes), never the
# suite label: a container is the suite's only when the rig labels it at run time.
LABEL org.forwarder-rig.image=1

RUN python3 -m venv /opt/forwarder
ENV PATH=/opt/forwarder/bin:$PATH PYTHONUNBUFFERED=1

# Dependencies first, so a change of the forwarder's code reuses this layer. The wildcard
# copies docker/wheels/forwarder/ when build_wheels.py made it (then pip stays offline);
# without it the pins are read from pyproject.toml and fetched from PyPI. setuptools>=70.1
# (its own bdist_wheel) lets the forwarder install from source below without a download.
COPY pyproject.toml /src/pyproject.toml
COPY docker/wheels/.gitignore docker/wheels/forwarde[r] /wheels/
RUN if [ -f /wheels/requirements.txt ]; then \
        pip install --no-cache-dir --no-index --find-links /wheels -r /wheels/requirements.txt; \
    else \
        python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
        && echo setuptools==84.2.1 >> /tmp/requirements.txt \
        && pip install --no-cache-dir -r /tmp/requirements.txt; \
    fi \
    && rm -rf /wheels

COPY forwarder/ /src/forwarder/
RUN pip install --no-cache-dir --no-deps --no-index --no-build-isolation /src \
    && rm -rf /src /tmp/* \
    && forwarder --help > /dev/null

ENTRYPOINT ["forwarder"]
