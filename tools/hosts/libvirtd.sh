#!/usr/bin/env bash
# Run a local libvirtd that can start LXC containers on this machine.
#
#   libvirtd.sh start|stop|status STATEDIR
#
# start:  after it returns 0, `lxc:///system` answers. libvirtd runs in its own mount namespace,
#         where /sys/fs/cgroup/unified is unmounted (libvirt 9 cannot set up a container's cgroups
#         on the hybrid v1+v2 layout), and in its own network namespace holding only lo and the
#         bridge onebr0 10.213.0.1/24, so containers never touch the host's eth0.
#         Its pid file and log are in STATEDIR. If some libvirtd already answers, nothing is started.
# stop:   destroys the containers of our libvirtd, stops it, and waits until it is gone.
# status: exit 0 and print the pid if our libvirtd runs, else exit 3.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 start|stop|status STATEDIR" >&2
    exit 2
fi
ACTION=$1
STATEDIR=$2
PIDFILE=$STATEDIR/libvirtd.pid
LOG=$STATEDIR/libvirtd.log
URI=lxc:///system
BRIDGE=${ONE_LXC_BRIDGE:-onebr0}
BRIDGE_ADDR=${ONE_LXC_BRIDGE_ADDR:-10.213.0.1/24}

our_pid() {
    # Prints the pid of our libvirtd when it still runs.
    [ -s "$PIDFILE" ] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = libvirtd ] \
        && echo "$pid"
}

answers() {
    virsh -q -c "$URI" version >/dev/null 2>&1
}

start() {
    mkdir -p "$STATEDIR"
    if pid=$(our_pid); then
        echo "libvirtd: already running (pid $pid, state in $STATEDIR)"
        return 0
    fi
    if answers; then
        echo "libvirtd: another libvirtd already answers on $URI; not starting a second one"
        return 0
    fi
    # libvirtd looks this user up before reading qemu.conf, and exits when it is missing.
    if ! getent passwd libvirt-qemu >/dev/null; then
        useradd --system --no-create-home --shell /usr/sbin/nologin --user-group libvirt-qemu
        echo "libvirtd: created user libvirt-qemu"
    fi
    mkdir -p /run/libvirt /var/log/libvirt/lxc /var/lib/libvirt /var/cache/libvirt
    rm -f "$PIDFILE"
    # `ip netns exec` would remount /sys and bring the cgroup2 mount back; unshare does not.
    setsid unshare --mount --net --propagation private sh -c "
        if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 1; fi
        ip link set lo up
        ip link add $BRIDGE type bridge
        ip addr add $BRIDGE_ADDR dev $BRIDGE
        ip link set $BRIDGE up
        exec /usr/sbin/libvirtd --pid-file '$PIDFILE'" >"$LOG" 2>&1 </dev/null &
    local launcher=$!
    for _ in $(seq 1 200); do
        if answers && [ -s "$PIDFILE" ]; then
            echo "libvirtd: started (pid $(cat "$PIDFILE"), bridge $BRIDGE $BRIDGE_ADDR, log $LOG)"
            return 0
        fi
        if ! kill -0 "$launcher" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    echo "libvirtd: failed to start; last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2 || true
    kill "$launcher" 2>/dev/null || true
    return 1
}

stop() {
    local pid
    if ! pid=$(our_pid); then
        echo "libvirtd: not running from $STATEDIR"
        rm -f "$PIDFILE"
        return 0
    fi
    # Containers outlive libvirtd, so stop ours first.
    local n=0
    for dom in $(virsh -q -c "$URI" list --name 2>/dev/null); do
        virsh -q -c "$URI" destroy "$dom" >/dev/null 2>&1 || true
        n=$((n + 1))
    done
    for dom in $(virsh -q -c "$URI" list --all --name 2>/dev/null); do
        virsh -q -c "$URI" undefine "$dom" >/dev/null 2>&1 || true
    done
    kill "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    echo "libvirtd: stopped pid $pid after destroying $n container(s)"
}

status() {
    local pid
    if pid=$(our_pid); then
        echo "libvirtd: running (pid $pid)"
        return 0
    fi
    echo "libvirtd: not running from $STATEDIR"
    return 3
}

case "$ACTION" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status STATEDIR" >&2; exit 2 ;;
esac
