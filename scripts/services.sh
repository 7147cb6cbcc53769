#!/usr/bin/env bash
# Make sure what the tests and the demo need is on this machine, and say so in
# one line per need. Idempotent and fast when everything is already there: a
# running service is left alone, an installed but stopped one is started, a
# missing one is installed with apt-get (root only). No systemd needed.
#
#   scripts/services.sh                 every need of the test suite
#   scripts/services.sh mariadb redis   only these (see NEEDS below)
#
# Each need is detected by what actually uses it, not by a similar name: the
# libclang that bindgen can load (not libclang-cpp), an ffmpeg that decodes AMR
# and encodes MP3, a MariaDB the tests can log in to, a Redis that answers PING,
# a Python venv in which the test modules import, a galera provider that
# mariadbd can load, a chromium with the chromedriver of its own version.
#
# The database: on a server this script installed itself (a fresh machine) the
# tests' root@127.0.0.1 with an empty password is configured. An existing server
# is never reconfigured: if root cannot log in over TCP without a password, a
# dedicated user `wework_test` (random password, rights on the test and demo
# databases only) is created through the unix socket when we may, and the URL
# to use is written to $STATE_DIR/db.env, which scripts/test.sh and
# scripts/demo.sh read. Otherwise it says how to create one and fails.
set -euo pipefail

NEEDS_ALL="mariadb redis ffmpeg libclang python galera chromium"
# The test database server (the ports and socket can be moved, e.g. to drill the
# existing-server path against a private mariadbd).
DB_HOST=127.0.0.1 DB_PORT=${WEWORK_SETUP_DB_PORT:-3306} REDIS_PORT=6379
DB_SOCKET=${WEWORK_SETUP_DB_SOCKET:-}
here=$(cd "$(dirname "$0")/.." && pwd)
STATE_DIR="${WEWORK_STATE_DIR:-$here/target/setup}"
PROVISIONED_MARK=/var/lib/mysql/.wework-archive-provisioned
mkdir -p "$STATE_DIR"

say() { echo "setup: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

is_root() { [ "$(id -u)" = 0 ]; }

apt_updated=0
apt_install() { # apt_install PKG... (quiet; the caller prints the one line)
    if ! is_root; then
        say "need root to apt-get install $*; install them or run as root"; return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ $apt_updated = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

wait_for() { # wait_for SECONDS CMD...
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.3
    done
}

# ---------------------------------------------------------------- MariaDB

mariadb_client() { command -v mariadb || command -v mysql || true; }
db_login_ok() { # db_login_ok USER [PASSWORD]: over TCP, as the tests connect
    local pw=${2:-}
    MYSQL_PWD="$pw" "$(mariadb_client)" -h "$DB_HOST" -P "$DB_PORT" -u"$1" --connect-timeout=2 \
        -e 'SELECT 1' >/dev/null 2>&1
}
db_socket() { "$(mariadb_client)" -uroot ${DB_SOCKET:+--socket="$DB_SOCKET"} --connect-timeout=2 "$@"; }
db_alive() { # the server answers at all (mariadb-admin ping succeeds even when access is denied)
    local admin
    admin=$(command -v mariadb-admin || command -v mysqladmin || true)
    if [ -n "$admin" ]; then
        "$admin" -h "$DB_HOST" -P "$DB_PORT" --connect-timeout=2 ping >/dev/null 2>&1
    else
        port_open "$DB_PORT"
    fi
}

write_db_env() { # write_db_env SERVER_URL
    local tmp="$STATE_DIR/db.env.$$"
    umask 077
    printf 'TEST_DB_SERVER=%s\nDATABASE_URL=%s/wework_archive\n' "$1" "$1" > "$tmp"
    mv -f "$tmp" "$STATE_DIR/db.env"
}

ensure_mariadb() {
    local how="up" daemon
    if ! port_open "$DB_PORT" || [ -z "$(mariadb_client)" ]; then
        daemon=$(command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd 2>/dev/null || true)
        if [ -z "$daemon" ] || [ -z "$(mariadb_client)" ]; then
            apt_install mariadb-server mariadb-client
            daemon=$(command -v mariadbd || echo /usr/sbin/mariadbd)
            # Installed by us, so this server is ours to configure for the tests.
            mkdir -p /var/lib/mysql && touch "$PROVISIONED_MARK"
            how="installed"
        fi
        if ! port_open "$DB_PORT"; then
            mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
            if [ ! -d /var/lib/mysql/mysql ]; then
                mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null 2>&1 \
                    || mysql_install_db --user=mysql --datadir=/var/lib/mysql >/dev/null
                touch "$PROVISIONED_MARK"
            fi
            start-stop-daemon --start --oknodo --background --exec "$daemon" -- --user=mysql \
                --bind-address="$DB_HOST" --port="$DB_PORT" >/dev/null
            wait_for 60 port_open "$DB_PORT" || { say "MariaDB: did not start listening on $DB_PORT"; return 1; }
            [ "$how" = installed ] || how="started"
        fi
    fi
    # The server answers; now a login the tests can use.
    wait_for 30 db_alive || { say "MariaDB: nothing answers at $DB_HOST:$DB_PORT"; return 1; }
    if db_login_ok root; then
        rm -f "$STATE_DIR/db.env"
        say "MariaDB: $how at $DB_HOST:$DB_PORT (root over TCP)"
        return 0
    fi
    if [ -f "$PROVISIONED_MARK" ] && db_socket -e 'SELECT 1' >/dev/null 2>&1; then
        # Our own fresh server: Debian lets root in through the socket only.
        db_socket -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;" >/dev/null
        if db_login_ok root; then
            rm -f "$STATE_DIR/db.env"
            say "MariaDB: $how at $DB_HOST:$DB_PORT (fresh server set up for tests: root over TCP)"
            return 0
        fi
    fi
    # Somebody else's server: leave its accounts alone and use a user of our own.
    local user=wework_test pw_file="$STATE_DIR/db-password" pw
    if [ -f "$pw_file" ]; then pw=$(cat "$pw_file"); else
        pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 24)
        (umask 077; printf '%s' "$pw" > "$pw_file")
    fi
    if ! db_login_ok "$user" "$pw"; then
        if is_root && db_socket -e 'SELECT 1' >/dev/null 2>&1; then
            db_socket <<SQL >/dev/null
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`wwt\\_%\`.* TO '$user'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`wework\\_archive%\`.* TO '$user'@'127.0.0.1';
SQL
        fi
    fi
    if db_login_ok "$user" "$pw"; then
        write_db_env "mysql://$user:$pw@$DB_HOST:$DB_PORT"
        say "MariaDB: $how at $DB_HOST:$DB_PORT (existing server left as it is; tests use user $user, see $STATE_DIR/db.env)"
        return 0
    fi
    say "MariaDB: cannot log in at $DB_HOST:$DB_PORT. Create a test user, e.g.
    CREATE USER 'wework_test'@'127.0.0.1' IDENTIFIED BY '…';
    GRANT ALL ON \`wwt\\_%\`.* TO 'wework_test'@'127.0.0.1'; GRANT ALL ON \`wework\\_archive%\`.* TO 'wework_test'@'127.0.0.1';
  and run with TEST_DB_SERVER=mysql://wework_test:…@$DB_HOST:$DB_PORT DATABASE_URL=mysql://wework_test:…@$DB_HOST:$DB_PORT/wework_archive"
    return 1
}

# ------------------------------------------------------------------ Redis

redis_ok() {
    if command -v redis-cli >/dev/null; then
        [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
    else
        port_open "$REDIS_PORT"
    fi
}

ensure_redis() {
    local how="up"
    # The tests also start private redis-servers of their own: the binary is needed.
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server redis-tools; how="installed"
    fi
    if ! redis_ok; then
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
        wait_for 20 redis_ok || { say "Redis: did not start on $REDIS_PORT"; return 1; }
        [ "$how" = installed ] || how="started"
    fi
    say "Redis: $how at 127.0.0.1:$REDIS_PORT"
}

# ----------------------------------------------------------------- ffmpeg

ffmpeg_ok() { # decodes AMR-NB and encodes MP3: what the voice transcode runs
    command -v ffmpeg >/dev/null || return 1
    # Captured first: grep -q closing the pipe early would fail it under pipefail.
    local dec enc
    dec=$(ffmpeg -hide_banner -decoders 2>/dev/null) enc=$(ffmpeg -hide_banner -encoders 2>/dev/null)
    [[ "$dec" == *" amrnb "* && "$enc" == *" libmp3lame "* ]]
}

ensure_ffmpeg() {
    if ffmpeg_ok; then say "ffmpeg: present ($(command -v ffmpeg), amrnb → libmp3lame)"; return 0; fi
    apt_install ffmpeg || true
    if ffmpeg_ok; then say "ffmpeg: installed (amrnb → libmp3lame)"; return 0; fi
    say "ffmpeg: missing or without amrnb/libmp3lame and could not be installed"
    return 1
}

# --------------------------------------------------------------- libclang

# The libclang bindgen (clang-sys) will load: a library exporting the C API
# (clang_createIndex), not libclang-cpp. Prints its directory.
find_libclang() {
    python3 - <<'PY'
import ctypes, glob, os
pats = ["/usr/lib/llvm-*/lib/libclang.so*", "/usr/lib/x86_64-linux-gnu/libclang-*.so*",
        "/usr/lib/x86_64-linux-gnu/libclang.so*", "/usr/local/lib/libclang*.so*"]
for p in sorted({f for pat in pats for f in glob.glob(pat)}, reverse=True):
    if "libclang-cpp" in p:
        continue
    try:
        if hasattr(ctypes.CDLL(p), "clang_createIndex"):
            print(os.path.dirname(os.path.realpath(p)) + " " + p)
            break
    except OSError:
        pass
PY
}

ensure_libclang() {
    local found
    found=$(find_libclang)
    if [ -n "$found" ]; then
        say "libclang (bindgen): present (${found#* })"
    else
        apt_install libclang1-14 || true
        found=$(find_libclang)
        [ -n "$found" ] || { say "libclang (bindgen): no loadable libclang and could not install libclang1-14"; return 1; }
        say "libclang (bindgen): installed libclang1-14 (${found#* })"
    fi
    printf 'LIBCLANG_PATH=%s\n' "${found%% *}" > "$STATE_DIR/libclang.env"
}

# ------------------------------------------------------------ Python venv

# The test suite's Python side (the shared reference generator, Feishu's own
# SDK as the fake platform's client check) runs in one venv with pinned
# requirements; it is rebuilt when the requirements change.
VENV="${WEWORK_VENV:-$here/.venv}"
REQS="$here/tests/py/requirements.txt"

venv_ok() {
    [ -x "$VENV/bin/python" ] || return 1
    [ -f "$VENV/.requirements" ] && cmp -s "$VENV/.requirements" "$REQS" || return 1
    "$VENV/bin/python" - "$REQS" <<'PY' >/dev/null 2>&1
import importlib, sys
for line in open(sys.argv[1]):
    # "pkg==1.2  # import: module_a module_b"
    if not line.lstrip().startswith("#") and "# import:" in line:
        for mod in line.split("# import:")[1].split():
            importlib.import_module(mod)
PY
}

ensure_python() {
    if venv_ok; then say "Python venv: present ($VENV)"; return 0; fi
    local py
    py=$(command -v python3 || true)
    if [ -z "$py" ] || ! "$py" -m venv --help >/dev/null 2>&1; then
        apt_install python3 python3-venv python3-pip; py=$(command -v python3)
    fi
    rm -rf "$VENV"
    "$py" -m venv "$VENV" >/dev/null 2>&1 || { apt_install python3-venv; "$py" -m venv "$VENV" >/dev/null; }
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" >/dev/null
    cp "$REQS" "$VENV/.requirements"
    venv_ok || { say "Python venv: installed, but the modules in $REQS do not import"; return 1; }
    say "Python venv: installed $VENV ($(grep -c '==' "$REQS") pinned packages)"
}

# ----------------------------------------------------------------- Galera

# ---------------------------------------------------------------- Chromium

# Debian's chromium and its chromedriver, of the same major version, for the
# archive browser's tests.
chromium_major() { chromium --version 2>/dev/null | grep -oE '[0-9]+' | head -n1; }
chromedriver_major() { chromedriver --version 2>/dev/null | grep -oE '[0-9]+' | head -n1; }
chromium_ok() { [ -n "$(chromium_major)" ] && [ "$(chromium_major)" = "$(chromedriver_major)" ]; }

ensure_chromium() {
    if chromium_ok; then say "Chromium: present (chromium and chromedriver $(chromium_major))"; return 0; fi
    apt_install chromium chromium-driver || true
    chromium_ok || { say "Chromium: chromium/chromium-driver missing or of different versions, could not install"; return 1; }
    say "Chromium: installed chromium and chromium-driver $(chromium_major)"
}

# ----------------------------------------------------------------- Galera

# A 3-node cluster on loopback for the cluster tests: the wsrep provider, and
# rsync for state transfers between nodes.
galera_provider() { ls /usr/lib/galera/libgalera_smm.so /usr/lib/libgalera_smm.so 2>/dev/null | head -n1; }

ensure_galera() {
    local how=present
    # wsrep_sst_rsync also looks for listening sockets with ss (iproute2) or lsof.
    if [ -z "$(galera_provider)" ] || ! command -v rsync >/dev/null || ! command -v ss >/dev/null; then
        apt_install galera-4 rsync iproute2 || true; how=installed
    fi
    [ -n "$(galera_provider)" ] && command -v rsync >/dev/null && command -v ss >/dev/null \
        || { say "Galera: galera-4 or rsync missing and could not be installed"; return 1; }
    say "Galera: $how ($(galera_provider), rsync for state transfer)"
}

# ------------------------------------------------------------------- main

if [ $# = 0 ]; then set -- $NEEDS_ALL; fi
for need in "$@"; do
    case "$need" in
        mariadb|mysql) ensure_mariadb ;;
        redis) ensure_redis ;;
        ffmpeg) ensure_ffmpeg ;;
        libclang) ensure_libclang ;;
        python) ensure_python ;;
        galera) ensure_galera ;;
        chromium) ensure_chromium ;;
        *) say "unknown need $need (one of: $NEEDS_ALL)"; exit 2 ;;
    esac
done
