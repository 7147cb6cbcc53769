#!/usr/bin/env bash
# The fresh-machine drill: take away what the setup scripts install or start by
# themselves, so that the README's test command run right after must put every
# piece back (a green CI otherwise hides a missing install step: something a
# developer once installed by hand is simply still there). Only what is safe to
# remove goes: packages nothing else of the image depends on, the fetched SDK,
# the Python venv, the setup state, and the test services (stopped, not
# uninstalled: they are started again exactly as on a machine that booted
# without them). Root only; CI runs it from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "drill: $*" >&2; }

if [ "$(id -u)" != 0 ]; then say "needs root (it removes packages); skipped"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive

# Packages installed by scripts/services.sh when missing, a group per need. A
# group is removed only if installed and only if removing it takes nothing
# else with it.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
for group in "libclang1-14" "ffmpeg" "chromium chromium-driver"; do
    pkgs=()
    for p in $group; do installed "$p" && pkgs+=("$p"); done
    [ ${#pkgs[@]} -gt 0 ] || continue
    others=$(apt-get -s remove "${pkgs[@]}" 2>/dev/null | awk '/^Remv / {print $2}' \
        | grep -vxF -f <(printf '%s\n' "${pkgs[@]}") || true)
    if [ -n "$others" ]; then
        say "keeping ${pkgs[*]}: removing it would also remove $(echo $others)"; continue
    fi
    apt-get remove -y -qq "${pkgs[@]}" >/dev/null && say "removed package(s) ${pkgs[*]}"
done

rm -f lib/*.so && say "removed the fetched SDK (lib/*.so)"
rm -rf .venv target/setup && say "removed the Python venv and setup state"

# The services the tests need: stop them; services.sh must start them again.
if command -v redis-cli >/dev/null && [ "$(redis-cli -p 6379 ping 2>/dev/null)" = PONG ]; then
    redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
    say "stopped Redis on 6379"
fi
if pid=$(pgrep -x mariadbd || pgrep -x mysqld); then
    kill $pid
    for _ in $(seq 1 100); do pgrep -x mariadbd >/dev/null || pgrep -x mysqld >/dev/null || break; sleep 0.3; done
    say "stopped MariaDB"
fi
