#!/usr/bin/env bash
# Installs what the test suite runs for real, one line of output per service:
#   - redis-server from Debian (apt-get) when it is not on PATH;
#   - the Kafka broker jars from Maven Central (scripts/kafka_broker.py fetch, cached in .cache/kafka).
# Usage: bash scripts/install_test_services.sh [PYTHON]   (default python3; Java 17+ and Maven needed)
# Cheap when everything is present: no apt-get and no mvn run.
set -euo pipefail

python=${1:-python3}
here=$(cd "$(dirname "$0")" && pwd)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

install_redis() {
    local version
    if ! command -v redis-server >/dev/null 2>&1; then
        if ! apt_install redis-server >/dev/null 2>&1; then
            as_root apt-get update -qq >/dev/null
            apt_install redis-server >/dev/null
        fi
    fi
    version=$(redis-server --version)
    echo "redis-server: $(command -v redis-server) (${version%% sha=*})"
}

fetch_kafka() {
    local libs
    libs=$("$python" "$here/kafka_broker.py" fetch)
    echo "kafka broker jars: $libs"
}

install_redis
fetch_kafka
