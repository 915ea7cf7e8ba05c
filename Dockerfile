# natlab: one image that is a lab gateway (engine + NFQUEUE daemon) and a generic host
# (probes: python -m natlab.probe). Used by `natlab up --backend docker`.
#
#   docker build -t natlab .                                   # with a registry
#   bash docker/make-local-base.sh && \
#     bash docker/build-image.sh --base natlab-base:local      # without one
#
# BASE_IMAGE is any Debian-like image with Python >= 3.11: the default python:3.11-slim,
# or the local Debian 12 base (system python3). Compilers live only in the build stage.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
LABEL natlab.build-stage="1"
# Proxy settings pass through as the predefined http_proxy/https_proxy/no_proxy args.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY docker/certs/ /usr/local/share/ca-certificates/natlab-build/
RUN set -eu; \
    if [ -x /usr/local/bin/python3 ]; then dev=""; else dev="python3-dev python3-venv"; fi; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends ca-certificates gcc libc6-dev \
        libnetfilter-queue-dev libnfnetlink-dev $dev >/dev/null; \
    apt-get install -y -qq --no-install-recommends libdpdk-dev pkg-config >/dev/null; \
    update-ca-certificates >/dev/null; \
    python3 -m venv /opt/natlab
COPY pyproject.toml README.md /src/
COPY natlab /src/natlab
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/natlab/bin/pip install -q '/src[nfqueue,dpdk]'
# The DPDK datapath's cffi binding, compiled here (the runtime stage has no compiler).
RUN /opt/natlab/bin/python -m natlab.datapaths.dpdk.binding

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# Runtime tools only; a base that has them all (the local base) needs no apt at all.
RUN set -eu; \
    need=""; \
    for p in iproute2 iptables libnetfilter-queue1 iputils-ping procps netcat-openbsd \
             python3-nftables libdpdk-dev pkg-config; do \
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"; \
    done; \
    if [ -n "$need" ]; then \
        apt-get update -qq && apt-get install -y -qq --no-install-recommends $need >/dev/null && \
        rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=build /opt/natlab /opt/natlab
ENV PATH=/opt/natlab/bin:$PATH PYTHONDONTWRITEBYTECODE=1
LABEL org.opencontainers.image.title="natlab" \
      org.opencontainers.image.description="natlab gateway (NAT engine behind NFQUEUE) and lab host with probes"
RUN natlab --version
CMD ["natlab", "--help"]
