#!/usr/bin/env bash
# Run the whole test suite on real parts, on a fresh Debian 12 machine or a developer's one.
#
#   tools/run-tests.sh [pytest args…]
#
# As root it installs what is missing (Debian packages: PostgreSQL, libvirt with its LXC
# driver, busybox, OpenSSH, iproute2; the project with its test extras), starts PostgreSQL and a
# local libvirtd, runs pytest, and stops what it started. Network-namespace hosts are started by
# the tests themselves (10.213.0.0/16, behind an unreachable route). Not root: no installs, the
# real-libvirt tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${ONESERVER_TEST_STATE:-/tmp/oneserver-test}
mkdir -p "$STATE"

PACKAGES="postgresql libvirt-daemon libvirt-daemon-driver-lxc libvirt-clients libvirt-dev
pkg-config libxml2-utils busybox-static openssh-server openssh-client iproute2"

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
python3 -m pip install -q -e '.[test,lxc]'

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

python3 -m pytest -rs "$@"
