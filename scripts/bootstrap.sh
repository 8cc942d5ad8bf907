#!/usr/bin/env bash
# Install everything hierbench needs, idempotently: Debian packages (as root) and the venv.
#   scripts/bootstrap.sh            # what `make test` and `make bench` run first
# Re-running is cheap: each step is skipped when its stamp or package is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${HIERBENCH_VENV:-.venv}
PYTHON=${PYTHON:-python3}
APT_PACKAGES="dataset-fashion-mnist mininet iperf3 iputils-ping iptables ethtool iproute2 libnetfilter-queue-dev cgroup-tools"

missing_apt() {
    local missing=""
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    echo "$missing"
}

install_apt() {
    local missing
    missing=$(missing_apt)
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: not root, cannot install Debian packages:$missing" >&2
        echo "bootstrap: run 'sudo scripts/bootstrap.sh' once; tests needing them will be skipped" >&2
        return 0
    fi
    echo "bootstrap: apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# The report test opens pages in a headless browser; without it that test is skipped, saying so.
OPTIONAL_APT="chromium-headless-shell"

install_optional_apt() {
    local p updated=""
    [ "$(id -u)" = 0 ] || return 0
    for p in $OPTIONAL_APT; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
        echo "bootstrap: apt-get install $p (optional)"
        [ -n "$updated" ] || { apt-get update -qq || true; updated=1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null \
            || echo "bootstrap: could not install $p; the tests that need it will be skipped" >&2
    done
}

install_venv() {
    local stamp="$VENV/.hierbench-installed"
    if [ -f "$stamp" ] && [ "$stamp" -nt setup.cfg ] && [ "$stamp" -nt requirements.txt ]; then
        return 0
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    echo "bootstrap: installing Python packages into $VENV (torch is large: ~1 min)"
    "$VENV/bin/pip" install -q -r requirements.txt
    "$VENV/bin/pip" install -q --no-deps -e .
    touch "$stamp"
}

# Ray, for sweeps across a cluster (run --cluster): only when asked (make setup-cluster).
install_cluster() {
    [ "${HIERBENCH_CLUSTER:-0}" = 1 ] || return 0
    "$VENV/bin/python" -c "import ray" 2>/dev/null && return 0
    echo "bootstrap: installing Ray into $VENV (run --cluster)"
    "$VENV/bin/pip" install -q "ray>=2.9"
}

install_apt
install_optional_apt
install_venv
install_cluster
