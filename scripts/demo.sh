#!/usr/bin/env bash
# The demo on a fresh machine: fetch the real SDK, make sure MariaDB and Redis
# are up, build, and run `wework-archive demo` (simulator → Tencent's SDK →
# decrypt → MariaDB, then media into msgfile/). Extra arguments go to `demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-sdk.sh >&2
bash scripts/services.sh >&2
cargo build --release --locked --bin wework-archive >&2
exec target/release/wework-archive demo "$@"
