"""SharedTM: like SshTM (same VM directories, epilog, per-host limit), but every disk SOURCE is
read on the host itself, from the shared datastore mount."""

from __future__ import annotations

import shlex

from drivers.ssh.remote import Target
from drivers.ssh.tm import SshTM
from oneserver.driver_contract import DiskSpec, HostRef, VMSpec


class SharedTM(SshTM):
    """Options as SshTM's (the cache options do not apply: the datastore is already local to
    the host)."""

    def _place(self, target: Target, host: HostRef, vm: VMSpec, disk: DiskSpec,
               dst: str) -> None:
        src, q = shlex.quote(disk.source), shlex.quote(dst)
        missing = shlex.quote(f"source {disk.source} is not on the host (is the datastore "
                              "mounted?)")
        # GNU tar recognises the compression of a file it reads itself (not of a pipe).
        script = (f"rm -rf {q} && mkdir -p {q} && "
                  f"if [ -d {src} ]; then cp -a --reflink=auto {src}/. {q}/; "
                  f"elif [ -f {src} ]; then tar -C {q} --numeric-owner -xf {src}; "
                  f"else echo {missing} >&2; exit 1; fi")
        self._sh(target, script, f"place disk {disk.disk_id} from {disk.source}")
        self.books.count(host.name, "transfers")
        if self.progress is not None:
            self.progress(vm.id, 1, 1)
