#!/usr/bin/env bash
# Network-namespace "hosts", each running its own libvirtd and sshd, reachable over real SSH.
#
#   vhosts.sh up|down N STATEDIR
#   vhosts.sh kill|revive I STATEDIR
#
# up:   after it returns 0, hosts vh1..vhN answer at 10.213.1.(10+i) on the bridge br-lab
#       (10.213.1.1/24, with `unreachable 10.213.0.0/16` so lab traffic never leaves the machine),
#       each with its own hostname, libvirtd (state under STATEDIR/vhI) and sshd, and
#       `lxc+ssh://root@10.213.1.X/system?command=STATEDIR/sshwrap` reaches that host's libvirtd.
#       STATEDIR/ssh_config and STATEDIR/sshwrap use a private client key; ~/.ssh is not touched.
#       Each host also has a bridge onebr0 10.213.(100+i).1/24 for container NICs.
#       Hosts share the machine's filesystem, so a rootfs path is the same on every host.
#       Root's login shell on the hosts is /bin/sh (a bind-mounted passwd): bash would source
#       ~/.bashrc for every ssh command, which costs 0.3 s here (pyenv init). The client shares
#       one ssh connection per host (ControlMaster), as OpenNebula's front-ends are set up.
# down: destroys the hosts' containers, stops their daemons and removes namespaces, veths, the
#       bridge and the route. Succeeds when nothing is there.
# kill: host I dies as seen from the network: its libvirtd, sshd and ssh sessions are killed;
#       its containers keep running (as they would on a host whose management plane crashed).
# revive: starts libvirtd and sshd of host I again in the same namespace; libvirtd takes the
#       running containers back.
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 up|down N STATEDIR | $0 kill|revive I STATEDIR" >&2
    exit 2
fi
ACTION=$1
N=$2
STATEDIR=$(mkdir -p "$3" && cd "$3" && pwd)
LAB_BRIDGE=br-lab

host_ip() { echo "10.213.1.$((10 + $1))"; }
host_uri_local() { echo "lxc:///system?socket=$STATEDIR/vh$1/run/libvirt/libvirt-sock"; }

alive() {
    # True when the pid in file $1 is a live process named $2.
    [ -s "$1" ] || return 1
    local pid
    pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ]
}

lab_up() {
    if ! ip link show "$LAB_BRIDGE" >/dev/null 2>&1; then
        ip link add "$LAB_BRIDGE" type bridge
        ip addr add 10.213.1.1/24 dev "$LAB_BRIDGE"
        ip link set "$LAB_BRIDGE" up
        echo "vhosts: bridge $LAB_BRIDGE 10.213.1.1/24 created"
    fi
    if ! ip route show type unreachable | grep -q '^unreachable 10.213.0.0/16'; then
        ip route add unreachable 10.213.0.0/16
        echo "vhosts: route unreachable 10.213.0.0/16 added"
    fi
}

client_up() {
    if [ ! -s "$STATEDIR/client_key" ]; then
        ssh-keygen -q -t ed25519 -N '' -C oneserver-vhosts -f "$STATEDIR/client_key"
        echo "vhosts: client key $STATEDIR/client_key created"
    fi
    cat > "$STATEDIR/ssh_config" <<CONF
Host *
    User root
    IdentityFile $STATEDIR/client_key
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    BatchMode yes
    LogLevel ERROR
    ConnectTimeout 5
    ServerAliveInterval 5
    ServerAliveCountMax 2
    ControlMaster auto
    ControlPath $STATEDIR/cm-%C
    ControlPersist 60
CONF
    cat > "$STATEDIR/sshwrap" <<WRAP
#!/bin/sh
# ssh with the lab's private config, for libvirt's ?command= and for the TM driver.
exec /usr/bin/ssh -F $STATEDIR/ssh_config "\$@"
WRAP
    chmod 0755 "$STATEDIR/sshwrap"
    mkdir -p /run/sshd
}

host_up() {
    local i=$1 ns=vh$1 R=$STATEDIR/vh$1 ip
    ip=$(host_ip "$i")
    if alive "$R/sshd.pid" sshd && alive "$R/libvirtd.pid" libvirtd; then
        echo "vhosts: $ns already up at $ip"
        return 0
    fi
    host_down "$i" >/dev/null
    mkdir -p "$R"/{run/libvirt,etc/libvirt,var/lib/libvirt,var/log/libvirt/lxc,var/cache/libvirt}
    cp -f /etc/libvirt/*.conf "$R/etc/libvirt/" 2>/dev/null || true
    sed 's#^\(root:[^:]*:0:0:[^:]*:[^:]*\):.*$#\1:/bin/sh#' /etc/passwd > "$R/passwd"
    [ -s "$R/hostkey" ] || ssh-keygen -q -t ed25519 -N '' -f "$R/hostkey"
    cp -f "$STATEDIR/client_key.pub" "$R/authorized_keys"
    cat > "$R/sshd_config" <<CONF
ListenAddress $ip:22
HostKey $R/hostkey
PidFile $R/sshd.pid
AuthorizedKeysFile $R/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 100
CONF
    ip netns add "$ns"
    ip link add "v$ns" type veth peer name eth0 netns "$ns"
    ip link set "v$ns" master "$LAB_BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link add onebr0 type bridge
    ip -n "$ns" addr add "10.213.$((100 + i)).1/24" dev onebr0
    ip -n "$ns" link set onebr0 up
    daemons_up "$i"
}

daemons_up() {
    local i=$1 ns=vh$1 R=$STATEDIR/vh$1
    rm -f "$R/libvirtd.pid" "$R/sshd.pid"
    # nsenter, not `ip netns exec`: the latter remounts /sys and brings back the cgroup2 mount
    # that libvirt 9 cannot handle. Bind mounts give each libvirtd its own sockets and state.
    setsid nsenter --net=/run/netns/"$ns" unshare --mount --uts --propagation private sh -c "
        if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 1; fi
        for d in run/libvirt etc/libvirt var/lib/libvirt var/log/libvirt var/cache/libvirt; do
            mount --bind '$R'/\$d /\$d || exit 1
        done
        mount --bind '$R/passwd' /etc/passwd || exit 1
        hostname $ns
        /usr/sbin/libvirtd --pid-file '$R/libvirtd.pid' >> '$R/libvirtd.log' 2>&1 &
        exec /usr/sbin/sshd -D -f '$R/sshd_config' -E '$R/sshd.log'" </dev/null >>"$R/ns.log" 2>&1 &
    echo $! > "$R/ns.pid"
}

descendants() {
    # Pids of every descendant of pid $1 (ssh sessions of an sshd), deepest last.
    local child
    for child in $(awk -v p="$1" '$4 == p { print $1 }' /proc/[0-9]*/stat 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

daemons_kill() {
    # Kill host $1's libvirtd, sshd and its sessions (by pid); print nothing. Containers stay.
    local i=$1 R=$STATEDIR/vh$1 pids="" pid pidfile
    "$STATEDIR/sshwrap" -O exit "root@$(host_ip "$i")" >/dev/null 2>&1 || true
    # Read every pid first: libvirtd removes its own pid file as it exits.
    for pidfile in "$R/libvirtd.pid" "$R/sshd.pid" "$R/ns.pid"; do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        rm -f "$pidfile"
        [ -n "$pid" ] || continue
        [ "$pidfile" = "$R/libvirtd.pid" ] || pids="$pids $(descendants "$pid")"
        pids="$pids $pid"
    done
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
    done
}

host_wait() {
    local i=$1 R=$STATEDIR/vh$1
    for _ in $(seq 1 200); do
        if virsh -q -c "$(host_uri_local "$i")" version >/dev/null 2>&1 && [ -s "$R/sshd.pid" ]; then
            echo "vhosts: vh$i up at $(host_ip "$i") (libvirtd $(cat "$R/libvirtd.pid"), sshd $(cat "$R/sshd.pid"))"
            return 0
        fi
        sleep 0.05
    done
    echo "vhosts: vh$i did not come up; see $R/ns.log $R/libvirtd.log $R/sshd.log" >&2
    tail -n 5 "$R/ns.log" "$R/libvirtd.log" >&2 || true
    return 1
}

host_down() {
    local i=$1 ns=vh$1 R=$STATEDIR/vh$1 uri
    uri=$(host_uri_local "$i")
    if alive "$R/libvirtd.pid" libvirtd; then
        for dom in $(virsh -q -c "$uri" list --name 2>/dev/null); do
            virsh -q -c "$uri" destroy "$dom" >/dev/null 2>&1 || true
        done
        for dom in $(virsh -q -c "$uri" list --all --name 2>/dev/null); do
            virsh -q -c "$uri" undefine "$dom" >/dev/null 2>&1 || true
        done
    fi
    daemons_kill "$i"
    ip netns del "$ns" 2>/dev/null || true
    ip link del "v$ns" 2>/dev/null || true
    echo "vhosts: vh$i down"
}

case "$ACTION" in
    up)
        if ! getent passwd libvirt-qemu >/dev/null; then
            useradd --system --no-create-home --shell /usr/sbin/nologin --user-group libvirt-qemu
            echo "vhosts: created user libvirt-qemu"
        fi
        lab_up
        client_up
        for i in $(seq 1 "$N"); do host_up "$i"; done
        for i in $(seq 1 "$N"); do host_wait "$i"; done
        echo "vhosts: $N host(s) up; URI lxc+ssh://root@10.213.1.X/system?command=$STATEDIR/sshwrap"
        ;;
    down)
        # Take down every host found in STATEDIR too, in case N is smaller than what was started.
        ids=$(seq 1 "$N")
        for d in "$STATEDIR"/vh*; do
            [ -d "$d" ] && ids="$ids ${d##*/vh}"
        done
        for i in $(echo "$ids" | tr ' ' '\n' | sort -nu); do host_down "$i"; done
        if ip link show "$LAB_BRIDGE" >/dev/null 2>&1; then
            ip link del "$LAB_BRIDGE"
            echo "vhosts: bridge $LAB_BRIDGE removed"
        fi
        if ip route show type unreachable | grep -q '^unreachable 10.213.0.0/16'; then
            ip route del unreachable 10.213.0.0/16
            echo "vhosts: route unreachable 10.213.0.0/16 removed"
        fi
        ;;
    kill)
        daemons_kill "$N"
        echo "vhosts: vh$N killed (libvirtd, sshd and its sessions; containers left running)"
        ;;
    revive)
        if ! ip netns list | grep -qw "vh$N"; then
            echo "vhosts: vh$N does not exist; use up" >&2
            exit 1
        fi
        daemons_kill "$N"
        daemons_up "$N"
        host_wait "$N"
        ;;
    *) echo "usage: $0 up|down N STATEDIR | $0 kill|revive I STATEDIR" >&2; exit 2 ;;
esac
