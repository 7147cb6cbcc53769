#!/usr/bin/env bash
# The whole test suite, on a fresh clone: fetch the real SDK, make sure every
# service and tool the tests use is there (scripts/services.sh), check the
# checked-in bindings against the header, build the release binary and check it
# carries no system OpenSSL, cross-check the shared Python reference against the
# real SDK, then run every test of the workspace (real SDK, simulator, real
# MariaDB and Redis). .ci/run calls exactly this. At the end it prints how long
# each step took and the test totals, also when a step failed.
set -euo pipefail
cd "$(dirname "$0")/.."

log_dir=target/test-logs
mkdir -p "$log_dir"
rm -f "$log_dir/cargo-test.log"
steps=() times=() results=()
current="" started=0

finish_step() { # finish_step RESULT
    [ -n "$current" ] || return 0
    steps+=("$current") times+=($((SECONDS - started))) results+=("$1")
    current=""
}
step() {
    finish_step ok
    current="$*" started=$SECONDS
    printf '\n== %s\n' "$*" >&2
}

summary() {
    local rc=$?
    finish_step "$([ $rc = 0 ] && echo ok || echo FAILED)"
    {
        printf '\n== summary\n'
        local i
        for i in "${!steps[@]}"; do
            printf '  %-46s %6ss  %s\n' "${steps[$i]}" "${times[$i]}" "${results[$i]}"
        done
        printf '  %-46s %6ss\n' "total" "$SECONDS"
        if [ -f "$log_dir/cargo-test.log" ]; then
            # cargo test prints one "test result:" line per test binary.
            awk '/^test result:/ {
                    for (i = 1; i <= NF; i++) {
                        if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i
                        if ($(i+1) ~ /^ignored/) s += $i
                    }
                    n++
                 }
                 END { if (n) printf "  tests: %d binaries; %d passed, %d failed, %d ignored\n", n, p, f, s }' \
                "$log_dir/cargo-test.log"
        fi
    } >&2
    exit $rc
}
trap summary EXIT

step "SDK (scripts/fetch-sdk.sh)"
bash scripts/fetch-sdk.sh

step "services and tools (scripts/services.sh)"
bash scripts/services.sh
# A dedicated database user, when the server's root could not be used as is.
if [ -f target/setup/db.env ]; then
    set -a; . target/setup/db.env; set +a
fi

step "bindings vs lib/WeWorkFinanceSdk_C.h"
bash scripts/regen-bindings.sh --check

step "release build + no system OpenSSL"
cargo build --release --locked --bin wework-archive
bash scripts/check-no-openssl.sh target/release/wework-archive

step "Python reference vs the real SDK (shared/sdk/check_vectors.py)"
shared=../shared/sdk
if [ -f "$shared/check_vectors.py" ]; then
    .venv/bin/python "$shared/check_vectors.py" lib/libWeWorkFinanceSdk_C.so
else
    echo "no $shared beside this clone: nothing to cross-check" >&2
fi

step "tests (cargo test --workspace)"
cargo test --workspace --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}" 2>&1 | tee "$log_dir/cargo-test.log"
