# moorage as a container image, a drop-in for the reference registry's image (registry:2):
# the config at /etc/docker/registry/config.yml, the data volume at /var/lib/registry, port
# 5000, REGISTRY_* variables. Build from a checkout with `docker build -t moorage .`.
#
# BASE_IMAGE is any Debian-like image with python3 (3.11 or later) and its venv module; both
# stages use it, so that the virtual environment built in the first runs in the second.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The wheels of moorage and of everything it needs, then a virtual environment holding them
# and no installer: pip stays in this stage with its cache and the build tools.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels . \
    && python3 -m venv --without-pip /opt/moorage \
    && /opt/build/bin/pip --python /opt/moorage/bin/python install --no-cache-dir \
        --disable-pip-version-check --no-index --no-deps /wheels/*.whl \
    && /opt/moorage/bin/python -m moorage --version
# Everything the runtime stage takes, in one tree: one layer there.
COPY deploy/container/config.yml /rootfs/etc/docker/registry/config.yml
COPY deploy/container/entrypoint.sh /rootfs/usr/local/bin/moorage-entrypoint
RUN mkdir -p /rootfs/opt && mv /opt/moorage /rootfs/opt/moorage

FROM ${BASE_IMAGE}
# A fixed uid and gid, outside the range distributions give to people and services, so that a
# volume's owner means the same on every host (README: "Containers").
RUN groupadd --gid 65532 moorage \
    && useradd --no-log-init --uid 65532 --gid 65532 --home-dir /var/lib/registry \
        --no-create-home --shell /usr/sbin/nologin moorage \
    && mkdir -p /var/lib/registry \
    && chown moorage:moorage /var/lib/registry
COPY --from=build /rootfs /
ENV PATH=/opt/moorage/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
VOLUME ["/var/lib/registry"]
EXPOSE 5000
# Probes the address the served config (and the REGISTRY_* variables) name: `moorage health`.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["moorage-entrypoint", "health"]
STOPSIGNAL SIGTERM
LABEL org.opencontainers.image.title="moorage" \
      org.opencontainers.image.description="A self-hosted private container image registry, a drop-in for distribution (registry:2)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["moorage-entrypoint"]
CMD ["/etc/docker/registry/config.yml"]
