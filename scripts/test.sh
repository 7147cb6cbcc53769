#!/usr/bin/env bash
# The whole test suite, on a fresh clone: fetch the real SDK, make sure MariaDB,
# Redis and ffmpeg are there, check the checked-in bindings against the header,
# build the release binary and check it carries no system OpenSSL, then run
# every test of the workspace (real SDK, simulator, real MariaDB and Redis).
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }

step "SDK"
bash scripts/fetch-sdk.sh
step "services"
bash scripts/services.sh
step "bindings vs lib/WeWorkFinanceSdk_C.h"
bash scripts/regen-bindings.sh --check
step "release build + no system OpenSSL"
cargo build --release --locked --bin wework-archive
bash scripts/check-no-openssl.sh target/release/wework-archive
step "tests"
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"
