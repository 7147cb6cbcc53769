#!/usr/bin/env bash
# The demo on a fresh machine: fetch the real SDK, make sure MariaDB and Redis
# are up, build, and run `wework-archive demo` (simulator → Tencent's SDK →
# decrypt → MariaDB, then media into msgfile/, then two meeting recordings from
# the fake Feishu, its owner authorized through the card, into msgfile/feishu/).
# Extra arguments go to `demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-sdk.sh >&2
bash scripts/services.sh mariadb redis >&2
bash scripts/services.sh ffmpeg >&2 || echo "demo: going on without ffmpeg: voice stays AMR only" >&2
# A dedicated database user, when the server's root could not be used as is
# (an explicit DATABASE_URL wins).
if [ -z "${DATABASE_URL:-}" ] && [ -f target/setup/db.env ]; then
    set -a; . target/setup/db.env; set +a
fi
cargo build --release --locked --bin wework-archive >&2
exec target/release/wework-archive demo "$@"
