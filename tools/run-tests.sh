#!/usr/bin/env bash
# Run the whole test suite on real parts, on a fresh Debian 12 machine or a developer's one.
#
#   tools/run-tests.sh [pytest args…]
#
# As root it installs the Debian packages that are missing (PostgreSQL, libvirt with its LXC
# driver, busybox, OpenSSH, iproute2, nftables, and python3-venv and a compiler for the venv), starts
# PostgreSQL and a local libvirtd, runs pytest, and stops what it started. Root or not, the
# project goes with its test and lxc extras into a venv of its own, never into the system's
# Python (Debian's is externally managed, PEP 668): $ONESERVER_VENV, default .venv in the
# checkout, made by $ONESERVER_PYTHON (default python3) and reused; pytest runs from there,
# after mypy's type check (a failed check runs no test).
# Network-namespace hosts are started by the tests themselves (10.213.0.0/16, behind an
# unreachable route). Not root: no Debian installs, the real-libvirt tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${ONESERVER_TEST_STATE:-/tmp/oneserver-test}
VENV=${ONESERVER_VENV:-.venv}
mkdir -p "$STATE"

# libvirt-python (the lxc extra) is built from source: libvirt-dev, pkg-config, gcc, python3-dev.
PACKAGES="python3-venv gcc python3-dev postgresql libvirt-daemon libvirt-daemon-driver-lxc
libvirt-clients libvirt-dev pkg-config libxml2-utils busybox-static openssh-server
openssh-client iproute2 nftables"

if [ "$(id -u)" = 0 ]; then
    missing=""
    for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        echo "installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $missing
    fi
fi
# A venv left without pip (made before python3-venv was there) is made again in place.
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "${ONESERVER_PYTHON:-python3}" -m venv "$VENV"
fi
VENV=$(cd "$VENV" && pwd)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,lxc]'
# The tests run the clients' commands (opennebula-cli's `one`) from the venv too.
export PATH="$VENV/bin:$PATH"

# The type check first ([tool.mypy] in pyproject.toml: strict, oneserver and drivers): an
# error fails the run in seconds, before the services start and the suite takes its minutes.
if ! "$VENV/bin/python" -m mypy; then
    echo "run-tests.sh: mypy found type errors (listed above); no test was run" >&2
    exit 1
fi

started_pg=""
if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null; then
    PGVER=$(ls /usr/lib/postgresql | sort -n | tail -1)
    if ! pg_ctlcluster "$PGVER" main status >/dev/null 2>&1; then
        pg_ctlcluster "$PGVER" main start
        started_pg=$PGVER
    fi
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='oneserver'\"" | grep -q 1 \
        || su postgres -c "psql -qc \"CREATE USER oneserver PASSWORD 'pw' CREATEDB\""
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='oneserver'\"" \
        | grep -q 1 || su postgres -c "createdb -O oneserver oneserver"
    export ONESERVER_TEST_PG=${ONESERVER_TEST_PG:-postgresql://oneserver:pw@127.0.0.1:5432/oneserver}
fi

started_libvirtd=""
if [ "$(id -u)" = 0 ] && [ -x /usr/sbin/libvirtd ]; then
    if ! virsh -q -c lxc:///system version >/dev/null 2>&1; then
        tools/hosts/libvirtd.sh start "$STATE/libvirtd"
        started_libvirtd=1
    fi
fi

cleanup() {
    [ -n "$started_libvirtd" ] && tools/hosts/libvirtd.sh stop "$STATE/libvirtd" || true
    [ -n "$started_pg" ] && pg_ctlcluster "$started_pg" main stop || true
}
trap cleanup EXIT

# pyproject's -ra: the short summary lists failures, errors and skips (with their reasons).
"$VENV/bin/python" -m pytest "$@"
