# syntax=docker/dockerfile:1
#
# wework-archive in two stages: build on the Rust image, run on slim Debian.
#
#   bash scripts/fetch-sdk.sh              # optional: bakes lib/libWeWorkFinanceSdk_C.so into the image
#   docker build -t wework-archive .
#   docker run --rm wework-archive --help
#
# Tencent's SDK is not part of this repository. Either fetch it into lib/ before
# building (it is then copied in), or mount it at run time:
#   -v /path/to/libWeWorkFinanceSdk_C.so:/opt/wework-archive/lib/libWeWorkFinanceSdk_C.so:ro
# The SDK is glibc-only and needs zlib (shared/sdk/RUST-NOTES.md §7.8): no
# musl, no distroless-static; Debian bookworm glibc plus zlib1g.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The migrations are embedded by build.rs; sys/ uses checked-in bindings (no libclang).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wework-archive \
 && bash scripts/check-no-openssl.sh target/release/wework-archive \
 && install -D -m 0755 target/release/wework-archive /out/wework-archive

FROM debian:bookworm-slim AS runtime
# ffmpeg: voice AMR → MP3; zlib1g: the SDK; ca-certificates: TLS to Tencent and databases;
# tini: PID 1 that forwards SIGTERM and reaps ffmpeg children.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g ffmpeg tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/wework-archive --create-home wework \
 && install -d -o wework -g wework -m 0750 /var/lib/wework-archive/msgfile

COPY --from=build /out/wework-archive /usr/local/bin/wework-archive
# For DBAs reviewing the schema; the binary carries and applies them itself.
COPY migrations/ /opt/wework-archive/migrations/
# The header always; the .so when it was fetched before the build.
COPY lib/ /opt/wework-archive/lib/
COPY docs/OPERATIONS.md /usr/share/doc/wework-archive/OPERATIONS.md

ENV WEWORK_SDK_LIB=/opt/wework-archive/lib/libWeWorkFinanceSdk_C.so \
    MSGFILE_DIR=/var/lib/wework-archive/msgfile \
    HTTP_LISTEN=0.0.0.0:29090 \
    LOG_FORMAT=json

USER wework
WORKDIR /var/lib/wework-archive
VOLUME ["/var/lib/wework-archive/msgfile"]
EXPOSE 29090
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/29090 && printf "GET /healthz HTTP/1.0\r\n\r\n" >&3 && grep -q "^ok" <&3'
# SIGTERM: every worker commits its batch in hand and leases are given back;
# give it time (docker stop -t 60, compose stop_grace_period).
STOPSIGNAL SIGTERM
# No core files: the binary calls prctl(PR_SET_DUMPABLE, 0) at start; with
# `docker run` also pass --ulimit core=0 (docker-compose.yml sets it).
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/wework-archive"]
CMD ["run"]
