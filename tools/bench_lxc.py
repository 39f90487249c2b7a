#!/usr/bin/env python3
"""Benchmark real containers through the API: allocate → RUNNING, on real libvirt.

    python tools/bench_lxc.py [--vms 20] [--vhosts 5] [--vhost-vms 50] [--skip-local] ...

Phase 1 allocates ``--vms`` VMs one after the other on the local libvirtd (host ``localhost``,
a directory rootfs; each keeps running until the end) and prints p50/p95/max of allocate →
RUNNING (goal: p95 <= 1.5 s).
Phase 2 starts ``--vhosts`` namespace hosts (tools/hosts/vhosts.sh: own libvirtd and sshd
each, reached over ssh), allocates ``--vhost-vms`` VMs at once with a rootfs tarball and prints
the time until all are RUNNING (goal: <= 10 s). Every phase is bounded by ``--timeout``; the
server, the containers, the namespace hosts and a libvirtd started here are removed at the
end, also after a failure or Ctrl-C. Needs root, libvirt, busybox-static and openssh.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import write_etc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOSTS = ROOT / "tools" / "hosts"
PASSWORD = "benchpass"
ACTIVE, RUNNING, DONE, MONITORED = 3, 3, 6, 2


class Api:
    """Raw XML-RPC on a private ``oneserver serve`` (raw calls keep the client's cost low)."""

    def __init__(self, url: str) -> None:
        self.proxy = xmlrpc.client.ServerProxy(url)
        self.session = f"oneadmin:{PASSWORD}"

    def __call__(self, method: str, *args: object) -> object:
        ok, value, *_ = getattr(self.proxy, method)(self.session, *args)
        if not ok:
            raise RuntimeError(f"{method}{args}: {value}")
        return value

    def vm_state(self, vid: int) -> tuple[int, int, str]:
        body = str(self("one.vm.info", vid, False))
        err = re.search(r"<ERROR><!\[CDATA\[(.*?)\]\]></ERROR>", body)
        return (int(re.search(r"<STATE>(\d+)</STATE>", body).group(1)),
                int(re.search(r"<LCM_STATE>(\d+)</LCM_STATE>", body).group(1)),
                err.group(1) if err else "")

    def host_state(self, hid: int) -> int:
        body = str(self("one.host.info", hid, False))
        return int(re.search(r"<STATE>(\d+)</STATE>", body).group(1))


def wait(what: str, check, timeout: float, step: float = 0.01) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise TimeoutError(f"{what}: not done after {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(work: Path, extra: list[str]) -> Iterator[Api]:
    data = work / "data"
    data.mkdir(parents=True)
    (work / "one_auth").write_text(f"oneadmin:{PASSWORD}\n")
    port = free_port()
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "oneserver", "serve", "--port", str(port), "--data",
             str(data), "--workers", "4", "--monitor-interval", "1", *extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env=dict(os.environ, ONE_AUTH=str(work / "one_auth")))
    api = Api(f"http://127.0.0.1:{port}/RPC2")
    vids: list[int] = []
    api.vids = vids  # type: ignore[attr-defined] - VMs to remove at the end
    try:
        wait("server answers", lambda: _answers(api), 30, 0.1)
        yield api
    finally:
        for vid in vids:
            with contextlib.suppress(Exception):
                api("one.vm.action", "terminate-hard", vid)
        with contextlib.suppress(Exception):
            wait("VMs DONE", lambda: all(api.vm_state(v)[0] == DONE for v in vids), 60, 0.2)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _answers(api: Api) -> bool:
    with contextlib.suppress(OSError, xmlrpc.client.Error, RuntimeError):
        api("one.system.version")
        return True
    return False


def template(name: str, source: Path) -> str:
    return f'NAME="{name}"\nCPU=0.1\nMEMORY=32\nDISK=[SOURCE="{source}"]\n'


def add_hosts(api: Api, names: list[str], timeout: float) -> list[int]:
    hids = [int(api("one.host.allocate", n, "lxc", "lxc", -1)) for n in names]
    wait("hosts MONITORED", lambda: all(api.host_state(h) == MONITORED for h in hids),
         timeout, 0.05)
    return hids


def until_running(api: Api, vids: list[int], timeout: float) -> None:
    def check() -> bool:
        for vid in vids:
            state, lcm, err = api.vm_state(vid)
            if err and state != ACTIVE:
                raise RuntimeError(f"VM {vid}: {err}")
            if (state, lcm) != (ACTIVE, RUNNING):
                return False
        return True
    wait(f"{len(vids)} VMs RUNNING", check, timeout)


def bench_local(args: argparse.Namespace, work: Path, rootfs: Path) -> None:
    with server(work / "local", args.server_args) as api:
        add_hosts(api, ["localhost"], args.timeout)
        times = []
        for i in range(args.vms):
            t0 = time.monotonic()
            vid = int(api("one.vm.allocate", template(f"bench-{i}", rootfs), False))
            api.vids.append(vid)  # type: ignore[attr-defined]
            until_running(api, [vid], args.timeout)
            times.append(time.monotonic() - t0)
        print("local: each " + " ".join(f"{t:.2f}" for t in times), flush=True)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"local: {len(times)} sequential VMs allocate->RUNNING: "
              f"p50 {statistics.median(times):.3f} s, p95 {p95:.3f} s, max {times[-1]:.3f} s "
              f"(goal p95 <= 1.5 s)", flush=True)


def bench_vhosts(args: argparse.Namespace, work: Path, tarball: Path) -> None:
    state = work / "vhosts"
    t0 = time.monotonic()
    subprocess.run([HOSTS / "vhosts.sh", "up", str(args.vhosts), state], check=True,
                   stdout=subprocess.DEVNULL, timeout=args.timeout)
    print(f"vhosts: {args.vhosts} namespace hosts up in {time.monotonic() - t0:.2f} s",
          flush=True)
    try:
        etc = write_etc(work / "etc", str(state / "sshwrap"))  # the hosts' ssh, in oned.conf
        with server(work / "remote", [*args.server_args, "--etc", str(etc)]) as api:
            t0 = time.monotonic()
            add_hosts(api, [f"10.213.1.{10 + i}" for i in range(1, args.vhosts + 1)],
                      args.timeout)
            print(f"vhosts: all MONITORED after {time.monotonic() - t0:.2f} s", flush=True)
            t0 = time.monotonic()
            for i in range(args.vhost_vms):
                vid = int(api("one.vm.allocate", template(f"spread-{i}", tarball), False))
                api.vids.append(vid)  # type: ignore[attr-defined]
            until_running(api, api.vids, args.timeout)  # type: ignore[attr-defined]
            print(f"vhosts: {args.vhost_vms} VMs on {args.vhosts} hosts all RUNNING after "
                  f"{time.monotonic() - t0:.2f} s (goal <= 10 s)", flush=True)
    finally:
        subprocess.run([HOSTS / "vhosts.sh", "down", str(args.vhosts), state],
                       stdout=subprocess.DEVNULL, timeout=300, check=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, default=20, help="sequential VMs on localhost")
    p.add_argument("--vhosts", type=int, default=5, help="namespace hosts")
    p.add_argument("--vhost-vms", type=int, default=50, help="VMs spread over the vhosts")
    p.add_argument("--timeout", type=float, default=120, help="seconds per phase step")
    p.add_argument("--skip-local", action="store_true")
    p.add_argument("--skip-vhosts", action="store_true")
    p.add_argument("--server-arg", dest="server_args", action="append", default=[],
                   help="extra flag for oneserver serve, e.g. --server-arg=--max-host=10")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_lxc: needs root (libvirt LXC, network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-lxc-") as tmp:
        work = Path(tmp)
        rootfs, tarball = work / "rootfs", work / "rootfs.tar.gz"
        subprocess.run([HOSTS / "build-rootfs.sh", rootfs, tarball], check=True,
                       stdout=subprocess.DEVNULL)
        libvirtd = work / "libvirtd"
        if not args.skip_local:
            subprocess.run([HOSTS / "libvirtd.sh", "start", libvirtd], check=True,
                           stdout=subprocess.DEVNULL)
        try:
            if not args.skip_local:
                bench_local(args, work, rootfs)
            if not args.skip_vhosts:
                bench_vhosts(args, work, tarball)
        finally:
            # Stops only a libvirtd this run started (its pid file is in our directory).
            subprocess.run([HOSTS / "libvirtd.sh", "stop", libvirtd], check=False,
                           stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
