"""Register simulated hosts on a oneserver (or real namespace LXC hosts), and remove them.

    python tools/sim_hosts.py add N [--prefix sim] [--template 'SIM_CPU=8'] [--url URL]
    python tools/sim_hosts.py remove [--prefix sim] [--url URL]
    python tools/sim_hosts.py serve N [--lxc] [--etc DIR]     # private server until Ctrl-C

``add`` and ``remove`` talk to a running server (``--url``, default http://127.0.0.1:2633/RPC2,
credentials from ONE_AUTH or ~/.one/one_auth as the OpenNebula CLI reads them). ``add`` waits
until every new host is MONITORED. ``remove`` terminates (hard) the VMs on the hosts whose name
starts with the prefix, waits for them to be DONE, then deletes the hosts.

``serve`` starts a private ``oneserver serve`` (tools/harness.py), adds N sim hosts, prints the
endpoint and session, and on Ctrl-C removes everything. With ``--lxc`` (N <= 20, root) it instead
brings up N network-namespace hosts running real libvirt LXC with ``tools/hosts/vhosts.sh up N
DIR``, registers them with im/vm ``lxc`` (the server's oned.conf points the drivers at the
namespace hosts' ssh wrapper: ``harness.write_etc``) and takes them down after.

The functions are what experiment_100x200.py, scale_run.py and the tests use.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

Call = Callable[..., Any]  # call(method, *params) -> value, raising on failure
VHOSTS = Path(__file__).resolve().parent / "hosts" / "vhosts.sh"
MONITORED, HOST_ERROR = 2, 3


def rpc(url: str, session: str) -> Call:
    """A ``call(method, *params)`` for a server; raises RuntimeError on a failure answer."""

    def call(method: str, *params: Any) -> Any:
        proxy = xmlrpc.client.ServerProxy(url)
        ok, value, *_ = getattr(proxy, method)(session, *params)
        if not ok:
            raise RuntimeError(f"{method} failed: {value}")
        return value

    return call


def add(call: Call, n: int, prefix: str = "sim", template: str = "", im: str = "sim",
        vmm: str = "sim", names: list[str] | None = None) -> list[int]:
    """Create ``n`` hosts ``<prefix>-<i>`` (or the given names); returns their ids."""
    ids = []
    for name in names or [f"{prefix}-{i}" for i in range(n)]:
        hid = call("one.host.allocate", name, im, vmm, -1)
        if template:
            call("one.host.update", hid, template, 1)
        ids.append(hid)
    return ids


def host_states(call: Call) -> dict[int, tuple[str, int]]:
    """id -> (name, STATE) of every host, from one hostpool.info."""
    body = call("one.hostpool.info")
    out = {}
    for m in re.finditer(r"<HOST><ID>(\d+)</ID><NAME>([^<]*)</NAME><STATE>(\d+)</STATE>", body):
        out[int(m.group(1))] = (m.group(2), int(m.group(3)))
    return out


def wait_monitored(call: Call, ids: list[int], timeout: float = 120.0,
                   progress: Callable[[int], None] | None = None) -> None:
    """Until every host of ``ids`` is MONITORED; RuntimeError after ``timeout`` seconds."""
    want = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        states = host_states(call)
        done = sum(1 for h in want if states.get(h, ("", -1))[1] == MONITORED)
        if progress:
            progress(done)
        if done == len(want):
            return
        if time.monotonic() > deadline:
            bad = sorted(h for h in want if states.get(h, ("", -1))[1] != MONITORED)[:5]
            raise RuntimeError(f"{len(want) - done} hosts not MONITORED after {timeout:g} s "
                               f"(e.g. {bad})")
        time.sleep(0.2)


def remove(call: Call, prefix: str, timeout: float = 120.0) -> int:
    """Terminate the VMs on hosts named ``<prefix>…`` and delete the hosts; returns how many."""
    hosts = {hid: name for hid, (name, _) in host_states(call).items()
             if name.startswith(prefix)}
    body = call("one.vmpool.info", -2, -1, -1, -1)
    vms = []
    for vm in re.findall(r"<VM>.*?</VM>", body, re.S):
        hid = re.findall(r"<HID>(\d+)</HID>", vm)
        if hid and int(hid[-1]) in hosts:
            vms.append(int(re.search(r"<ID>(\d+)</ID>", vm).group(1)))  # type: ignore[union-attr]
    for vid in vms:
        try:
            call("one.vm.action", "terminate-hard", vid)
        except RuntimeError:
            call("one.vm.recover", vid, 3)  # stuck in a failure state: delete
    deadline = time.monotonic() + timeout
    while vms and time.monotonic() < deadline:
        body = call("one.vmpool.info", -2, -1, -1, 0)  # not DONE
        alive = {int(x) for x in re.findall(r"<VM><ID>(\d+)</ID>", body)}
        if not alive & set(vms):
            break
        time.sleep(0.2)
    for hid in hosts:
        call("one.host.delete", hid)
    return len(hosts)


def write_etc(dst: Path, options: dict[str, str], vm_threads: int = 15, tm_threads: int = 15,
              im_threads: int = 15, sched: dict[str, str] | None = None) -> Path:
    """A copy of the project's etc/ in ``dst`` whose sim IM_MAD/VM_MAD/TM_MAD blocks carry the
    given ``-t`` threads and ``-o KEY=VALUE`` options (and sched.conf keys, if given)."""
    import shutil

    from harness import ROOT
    shutil.copytree(ROOT / "etc", dst, dirs_exist_ok=True)
    conf = dst / "oned.conf"
    text = re.sub(r'(?m)^(IM|VM|TM)_MAD\s*=\s*\[[^\]]*NAME\s*=\s*"sim"[^\]]*\]\s*\n', "",
                  conf.read_text())
    opts = " ".join(f"-o {k}={v}" for k, v in sorted(options.items()))
    text += (f'\n# sim drivers for this run (written by tools/sim_hosts.py)\n'
             f'IM_MAD = [ NAME = "sim", EXECUTABLE = "sim", ARGUMENTS = "-r 0 -t {im_threads} '
             f'{opts}" ]\n'
             f'VM_MAD = [ NAME = "sim", EXECUTABLE = "sim", ARGUMENTS = "-r 0 -t {vm_threads} '
             f'{opts}", TYPE = "xml" ]\n'
             f'TM_MAD = [ NAME = "sim", EXECUTABLE = "sim", ARGUMENTS = "-r 0 -t {tm_threads} '
             f'{opts}" ]\n')
    conf.write_text(text)
    if sched:
        path = dst / "sched.conf"
        body = path.read_text()
        for key, value in sched.items():
            body, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", body)
            if not n:
                body += f"{key} = {value}\n"
        path.write_text(body)
    return dst


def one_auth() -> str:
    path = os.environ.get("ONE_AUTH") or os.path.expanduser("~/.one/one_auth")
    return Path(path).read_text().strip()


# ---------------------------------------------------------------------------------------------
# real namespace hosts


def lxc_up(n: int, state: Path) -> list[str]:
    """Start ``n`` namespace hosts running libvirt LXC; returns their addresses."""
    if n > 20:
        raise ValueError("namespace hosts: at most 20")
    subprocess.run(["bash", str(VHOSTS), "up", str(n), str(state)], check=True, timeout=600)
    return [f"10.213.1.{10 + i}" for i in range(1, n + 1)]


def lxc_down(n: int, state: Path) -> None:
    subprocess.run(["bash", str(VHOSTS), "down", str(n), str(state)], check=False, timeout=600)


def add_lxc(call: Call, addresses: list[str]) -> list[int]:
    """Register namespace hosts with the lxc drivers (the server's oned.conf gives them the
    hosts' ssh wrapper: see harness.write_etc)."""
    return add(call, len(addresses), im="lxc", vmm="lxc", names=addresses)


# ---------------------------------------------------------------------------------------------
# command line


def _serve(args: argparse.Namespace) -> int:
    import harness
    state = Path(tempfile.mkdtemp(prefix="vhosts_")) if args.lxc else None
    etc = Path(args.etc) if args.etc else None
    if state is not None:  # the drivers reach the namespace hosts through their ssh wrapper
        etc = harness.write_etc(state / "etc", str(state / "sshwrap"))
    server = harness.start_server(2, etc=etc, prefix="sim_hosts_", wait_workers=False)
    try:
        if state is not None:
            ids = add_lxc(server.call, lxc_up(args.n, state))
        else:
            ids = add(server.call, args.n, args.prefix, args.template)
        wait_monitored(server.call, ids, timeout=max(60.0, args.n / 5))
        print(f"{len(ids)} hosts MONITORED; XML-RPC at {server.url}, session {server.session!r}; "
              f"Ctrl-C to remove them and stop", flush=True)
        while server.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            if server.proc.poll() is None:
                print(f"removed {remove(server.call, args.prefix if state is None else '10.')} "
                      f"hosts", flush=True)
        finally:
            harness.stop_server(server)
            if state is not None:
                lxc_down(args.n, state)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("ONE_XMLRPC", "http://127.0.0.1:2633/RPC2"))
    p.add_argument("--prefix", default="sim")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="register N sim hosts and wait until MONITORED")
    a.add_argument("n", type=int)
    a.add_argument("--template", default="", help="host template, e.g. 'SIM_CPU=8'")
    sub.add_parser("remove", help="terminate their VMs and delete the hosts")
    s = sub.add_parser("serve", help="a private server with N hosts until Ctrl-C")
    s.add_argument("n", type=int)
    s.add_argument("--template", default="")
    s.add_argument("--etc", help="--etc directory for the server")
    s.add_argument("--lxc", action="store_true", help="namespace hosts with real libvirt LXC")
    args = p.parse_args()
    if args.command == "serve":
        return _serve(args)
    call = rpc(args.url, one_auth())
    if args.command == "add":
        ids = add(call, args.n, args.prefix, args.template)
        wait_monitored(call, ids, timeout=max(60.0, args.n / 5))
        print(f"{len(ids)} sim hosts MONITORED: ids {ids[0]}..{ids[-1]}")
    else:
        print(f"removed {remove(call, args.prefix)} hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
