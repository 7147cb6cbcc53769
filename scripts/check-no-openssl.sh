#!/usr/bin/env bash
# Fails if a binary links system OpenSSL (or libcurl). The SDK carries its own
# OpenSSL 3.0.14 and, loaded with DEEPBIND, must never be mixed with another one
# (shared/sdk/RUST-NOTES.md §6): every TLS crate here uses rustls/aws-lc-rs.
set -euo pipefail
bin="${1:-target/release/wework-archive}"
libs=$(ldd "$bin")
if echo "$libs" | grep -Ei 'libssl|libcrypto|libcurl'; then
    echo "check-no-openssl: $bin links system OpenSSL/libcurl (above); use rustls features" >&2
    exit 1
fi
echo "check-no-openssl: $bin links only: $(echo "$libs" | awk '{print $1}' | tr '\n' ' ')"
