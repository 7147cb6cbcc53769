#!/usr/bin/env bash
# Fetch Tencent's WeCom Finance SDK (libWeWorkFinanceSdk_C.so) into lib/.
#
# The library is not ours to commit; it ships inside the PyPI wheel
# pywecomarchive==0.1.0. We download that wheel with pip (no dependencies),
# extract the one Linux x86-64 .so, and verify its md5 against the build that
# shared/sdk/PROTOCOL.md documents. Idempotent: a no-op when lib/ already holds
# the right file.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dest="${1:-${WEWORK_SDK_LIB:-$here/lib/libWeWorkFinanceSdk_C.so}}"
want_md5="f2db3dd1372c516db6290afbd1b5c698"
wheel_pkg="pywecomarchive==0.1.0"
member="pywecomarchive/lib/linux/x86_64/libWeWorkFinanceSdk_C.so"

md5_of() { md5sum "$1" | cut -d' ' -f1; }

if [ -f "$dest" ] && [ "$(md5_of "$dest")" = "$want_md5" ]; then
    echo "fetch-sdk: $dest is present and verified (md5 $want_md5)"
    exit 0
fi

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "fetch-sdk: the SDK build we verify is for Linux x86-64 (glibc); this is $(uname -s)-$(uname -m)" >&2
    exit 1
fi

py=$(command -v python3 || command -v python || true)
if [ -z "$py" ]; then
    echo "fetch-sdk: python3 with pip is needed to download $wheel_pkg (apt-get install python3-pip)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-sdk: downloading $wheel_pkg"
"$py" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.11 -d "$tmp" "$wheel_pkg"
wheel=$(ls "$tmp"/*.whl | head -n1)
"$py" - "$wheel" "$member" "$tmp/sdk.so" <<'PY'
import sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read(member))
PY
got=$(md5_of "$tmp/sdk.so")
if [ "$got" != "$want_md5" ]; then
    echo "fetch-sdk: md5 mismatch: got $got, want $want_md5; refusing to install it" >&2
    exit 1
fi
mkdir -p "$(dirname "$dest")"
install -m 0644 "$tmp/sdk.so" "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
echo "fetch-sdk: installed $dest (md5 $want_md5)"
