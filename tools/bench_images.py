#!/usr/bin/env python3
"""Benchmark image transfers: VMs from one big image onto namespace hosts, cold vs warm cache.

    python tools/bench_images.py [--vms 20] [--vhosts 5] [--image-mb 100] [--rounds ...]

Builds a busybox rootfs padded with ``--image-mb`` MB of incompressible data, registers it as
an image (the core copies it into the datastore), starts ``--vhosts`` namespace hosts
(tools/hosts/vhosts.sh: own libvirtd and sshd each, reached over ssh) and runs rounds of
``--vms`` VMs allocated at once (the scheduler places them), each round timed from the first
allocate until all are RUNNING, with the bytes the ssh TM streamed to the hosts (the hosts'
``TM_BYTES_SENT``) and the cache hits/misses. Rounds (``--rounds``, in order):

* ``cold``: empty host caches: one transfer per host, the other VMs copy on the host;
* ``warm``: every host has the image cached: no transfer;
* ``hardlink``: warm, with ``TM_CACHE_COPY=hardlink`` (a hard-link tree instead of a copy);
* ``nocache``: ``TM_CACHE=no``: every VM streams the image, as the old driver did.

Everything started here is removed at the end, also after a failure or Ctrl-C. Needs root,
libvirt, busybox-static and openssh.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lxc import DONE, HOSTS, Api, add_hosts, server, until_running, wait  # noqa: E402
from harness import write_etc  # noqa: E402

ROUND_SETTINGS = {
    "cold": 'TM_CACHE="yes"\nTM_CACHE_COPY="reflink"\n',
    "warm": 'TM_CACHE="yes"\nTM_CACHE_COPY="reflink"\n',
    "hardlink": 'TM_CACHE="yes"\nTM_CACHE_COPY="hardlink"\n',
    "nocache": 'TM_CACHE="no"\n',
}


def build_image(work: Path, pad_mb: int) -> Path:
    tree, tarball = work / "rootfs", work / "image.tar.gz"
    subprocess.run([HOSTS / "build-rootfs.sh", tree], check=True, stdout=subprocess.DEVNULL)
    with open(tree / "pad", "wb") as f:
        for _ in range(pad_mb):
            f.write(os.urandom(2**20))
    subprocess.run(["tar", "-C", tree, "-czf", tarball, "."], check=True)
    return tarball


def metric(api: Api, hid: int, name: str) -> int:
    body = str(api("one.host.info", hid, False))
    m = re.search(rf"<{name}><!\[CDATA\[(\d+)\]\]></{name}>", body)
    return int(m.group(1)) if m else 0


def totals(api: Api, hids: list[int]) -> dict[str, int]:
    names = ("TM_BYTES_SENT", "TM_CACHE_HITS", "TM_CACHE_MISSES", "TM_TRANSFERS")
    return {n: sum(metric(api, h, n) for h in hids) for n in names}


def settled_totals(api: Api, hids: list[int]) -> dict[str, int]:
    """The hosts' counters once the monitor (1 s interval here) has caught up."""
    last = totals(api, hids)
    for _ in range(10):
        time.sleep(1.2)
        now = totals(api, hids)
        if now == last:
            return now
        last = now
    return last


def run_round(api: Api, name: str, hids: list[int], iid: int, vms: int, timeout: float
              ) -> str:
    api("one.cluster.update", 0, ROUND_SETTINGS[name], 1)
    before = settled_totals(api, hids)
    t0 = time.monotonic()
    vids = [int(api("one.vm.allocate", f'NAME="{name}-{i}"\nCPU=0.1\nMEMORY=32\n'
                                       f"DISK=[IMAGE_ID={iid}]\n", False)) for i in range(vms)]
    api.vids.extend(vids)  # type: ignore[attr-defined]
    until_running(api, vids, timeout)
    took = time.monotonic() - t0
    after = settled_totals(api, hids)
    placed: dict[int, int] = {}
    for vid in vids:
        hid = int(re.findall(r"<HID>(\d+)</HID>", str(api("one.vm.info", vid, False)))[-1])
        placed[hid] = placed.get(hid, 0) + 1
    d = {k: after[k] - before[k] for k in after}
    line = (f"{name:9s} {vms} VMs RUNNING in {took:6.2f} s; {d['TM_BYTES_SENT'] / 2**20:8.1f} MB "
            f"sent in {d['TM_TRANSFERS']} transfers; cache hits {d['TM_CACHE_HITS']}, misses "
            f"{d['TM_CACHE_MISSES']}; VMs per host {sorted(placed.values())}")
    print(line, flush=True)
    for vid in vids:
        api("one.vm.action", "terminate-hard", vid)
    wait("VMs DONE", lambda: all(api.vm_state(v)[0] == DONE for v in vids), timeout, 0.2)
    return line


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, default=20)
    p.add_argument("--vhosts", type=int, default=5)
    p.add_argument("--image-mb", type=int, default=100)
    p.add_argument("--rounds", default="cold,warm,hardlink,nocache")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--server-arg", dest="server_args", action="append", default=[])
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_images: needs root (libvirt LXC, network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        tarball = build_image(work, args.image_mb)
        print(f"image: {tarball.stat().st_size / 2**20:.1f} MB tar.gz built in "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        state = work / "vhosts"
        subprocess.run([HOSTS / "vhosts.sh", "up", str(args.vhosts), state], check=True,
                       stdout=subprocess.DEVNULL, timeout=args.timeout)
        try:
            etc = write_etc(work / "etc", str(state / "sshwrap"))  # the hosts' ssh
            with server(work / "srv", [*args.server_args, "--etc", str(etc)]) as api:
                ds = int(api("one.datastore.allocate",
                             f'NAME="bench"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
                             f'SAFE_DIRS="{work}"\n', -1))
                t0 = time.monotonic()
                iid = int(api("one.image.allocate", f'NAME="big"\nPATH="{tarball}"\n', ds,
                              False))
                wait("image READY", lambda: "<STATE>1</STATE>" in str(
                    api("one.image.info", iid, False)), args.timeout, 0.1)
                print(f"image: registered (copied and checked by the core) in "
                      f"{time.monotonic() - t0:.2f} s", flush=True)
                hids = add_hosts(api, [f"10.213.1.{10 + i}" for i in range(1, args.vhosts + 1)],
                                 args.timeout)
                for name in args.rounds.split(","):
                    run_round(api, name.strip(), hids, iid, args.vms, args.timeout)
        finally:
            subprocess.run([HOSTS / "vhosts.sh", "down", str(args.vhosts), state],
                           stdout=subprocess.DEVNULL, timeout=300, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
