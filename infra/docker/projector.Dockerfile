# syntax=docker/dockerfile:1.7
# projector: Kafka consumers that build the read models; the image also ships the analyst tools.
#
# Build from the repository root (the build context is the Cargo workspace):
#   DOCKER_BUILDKIT=1 docker build -f infra/docker/projector.Dockerfile -t phonebill/projector:dev .
# projector.Dockerfile.dockerignore keeps target/ and .git out of the context.
# Runtime contract (infra/README.md): non-root uid 10001, read-only root filesystem,
# HTTP, /health/live, /health/ready and /metrics on PHONEBILL_HTTP_ADDR (0.0.0.0:8080),
# JSON logs on stdout, SIGTERM = graceful shutdown.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# rdkafka builds librdkafka from source (make or cmake, a C/C++ toolchain) and links
# the system OpenSSL for SASL_SSL to Event Hubs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The target dir is a BuildKit cache, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p projector \
 && cargo build --release --locked -p analyst \
 && install -D -m 0755 target/release/phonebill-analyst /out/phonebill-analyst \
 && install -D -m 0755 target/release/projector /out/projector

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 phonebill \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin phonebill
COPY --from=build /out/projector /usr/local/bin/projector
# The analyst tools (phonebill-analyst: replay, compare, export...): the replay CronJob's command.
COPY --from=build /out/phonebill-analyst /usr/local/bin/phonebill-analyst
ENV PHONEBILL_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
# /metrics when PHONEBILL_METRICS_ADDR points here (the chart sets it).
EXPOSE 9090
USER 10001:10001
# No HEALTHCHECK: the image has no HTTP client, and Kubernetes ignores HEALTHCHECK;
# the chart's liveness/readiness probes call /health/live and /health/ready.
# checkov:skip=CKV_DOCKER_2: health is checked by Kubernetes probes on /health/live and /health/ready
ENTRYPOINT ["/usr/local/bin/projector"]
