# The `strata` image: one binary for `strata api`, `strata operator`,
# `strata pod-agent` and the in-pod bootstrap (an init container copies
# /usr/local/bin/strata into the PostgreSQL pod).
#
# Builds as it is wherever the two base images can be pulled. Where no
# container registry is reachable, scripts/images.sh first makes both bases
# from Debian packages under the same names (see docs/images.md).
#
#   podman build --network host -t ghcr.io/strata-dev/strata:0.1.0 .
#
# Strata's own tests put a binary they already built into the same image
# without compiling it again: `--target prebuilt`, with a build context that
# holds only that binary, named `strata` (scripts/images.sh --strata-binary).

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# Where the official Rust image keeps cargo; the local base uses the same.
ENV CARGO_HOME=/usr/local/cargo \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The registry and the target directory are cache mounts: they outlive the
# build, so the next build recompiles only what changed. The target
# directory is not part of any layer, hence the copy to /out.
RUN --mount=type=cache,id=strata-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=strata-cargo-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p strata --bin strata \
 && install -D -m 0755 target/release/strata /out/strata \
 && /out/strata --version

# Root certificates for outgoing TLS (OpenID Connect issuers): the build
# base's, without the ca-certificates package and the openssl it pulls in.
FROM ${RUST_IMAGE} AS certificates

# Everything of the image but the binary.
FROM ${RUNTIME_IMAGE} AS runtime
# The uid the Helm chart runs as; no home, no shell, no lastlog entry.
RUN groupadd --gid 65532 strata \
 && useradd --uid 65532 --gid strata --no-create-home --no-log-init \
      --home-dir /nonexistent --shell /usr/sbin/nologin strata
COPY --from=certificates /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/strata"]
CMD ["--help"]
# Last, so that a new version or commit reuses every layer above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="strata" \
      org.opencontainers.image.description="Strata, managed PostgreSQL: the API, the Kubernetes operator and the in-pod agent in one binary" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/strata-dev/strata" \
      org.opencontainers.image.vendor="Strata"

# A binary built elsewhere: the build context holds only `strata`.
FROM runtime AS prebuilt
COPY strata /usr/local/bin/strata

# The default: the binary compiled in the build stage.
FROM runtime
COPY --from=build /out/strata /usr/local/bin/strata
