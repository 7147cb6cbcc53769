#!/usr/bin/env bash
# Make sure the real services the tests and the demo use are up:
#   MariaDB on 127.0.0.1:3306 (root, empty password) and Redis on 127.0.0.1:6379,
# plus ffmpeg (voice AMR → MP3). Idempotent and fast when all is already up:
# a running service is left alone, an installed but stopped one is started,
# a missing one is installed with apt-get (root only). No systemd needed.
#
#   scripts/services.sh            ensure everything
#   scripts/services.sh mariadb    ensure one of: mariadb redis ffmpeg
set -euo pipefail

DB_HOST=127.0.0.1 DB_PORT=3306 REDIS_PORT=6379
log() { echo "services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_updated=0
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        log "need root to apt-get install $*; install them or run as root"; return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ $apt_updated = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
    log "installing $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_for() { # wait_for SECONDS CMD...
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.3
    done
}

mariadb_client() { command -v mariadb || command -v mysql; }
db_tcp_ok() { "$(mariadb_client)" -h "$DB_HOST" -P "$DB_PORT" -uroot --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1; }

ensure_mariadb() {
    if port_open "$DB_PORT" && [ -n "$(mariadb_client)" ] && db_tcp_ok; then return 0; fi
    local daemon
    daemon=$(command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd 2>/dev/null || true)
    if [ -z "$daemon" ]; then
        apt_install mariadb-server mariadb-client
        daemon=$(command -v mariadbd || echo /usr/sbin/mariadbd)
    fi
    if ! port_open "$DB_PORT"; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
        if [ ! -d /var/lib/mysql/mysql ]; then
            log "initialising the MariaDB data directory"
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null 2>&1 \
                || mysql_install_db --user=mysql --datadir=/var/lib/mysql >/dev/null
        fi
        log "starting MariaDB"
        start-stop-daemon --start --oknodo --background --exec "$daemon" -- --user=mysql \
            --bind-address="$DB_HOST" --port="$DB_PORT" >/dev/null
        wait_for 60 port_open "$DB_PORT" || { log "MariaDB did not start listening on $DB_PORT"; return 1; }
    fi
    if ! wait_for 20 db_tcp_ok; then
        # A fresh Debian install lets root in only through the unix socket.
        log "allowing root with an empty password over TCP (test/dev database)"
        "$(mariadb_client)" -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;" \
            || true
        db_tcp_ok || { log "cannot log in to MariaDB at $DB_HOST:$DB_PORT as root without a password"; return 1; }
    fi
    log "MariaDB is up on $DB_HOST:$DB_PORT"
}

redis_ok() {
    if command -v redis-cli >/dev/null; then
        [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
    else
        port_open "$REDIS_PORT"
    fi
}

ensure_redis() {
    if redis_ok; then return 0; fi
    if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
    mkdir -p /var/lib/redis /var/log/redis
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
    wait_for 20 redis_ok || { log "Redis did not start on $REDIS_PORT"; return 1; }
    log "Redis is up on 127.0.0.1:$REDIS_PORT"
}

ensure_ffmpeg() {
    if command -v ffmpeg >/dev/null; then return 0; fi
    apt_install ffmpeg || log "ffmpeg could not be installed: voice will be kept as AMR only"
}

if [ $# = 0 ]; then set -- mariadb redis ffmpeg; fi
for s in "$@"; do
    case "$s" in
        mariadb|mysql) ensure_mariadb ;;
        redis) ensure_redis ;;
        ffmpeg) ensure_ffmpeg ;;
        *) log "unknown service $s (mariadb, redis, ffmpeg)"; exit 2 ;;
    esac
done
