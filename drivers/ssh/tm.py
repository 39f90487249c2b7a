"""SshTM: put a container's disks on a host, and remove them afterwards.

Each disk SOURCE lives on the machine running the core (an image datastore): a root filesystem
tarball (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.xz``/``.txz``, ``.tar.bz2``) or a directory. It is
streamed as a tar archive into ``tar -x`` on the host, run locally for ``localhost`` and through
ssh otherwise, into ``<datastore_dir>/<vm id>/disk.<disk id>``.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import subprocess
from collections.abc import Mapping
from typing import IO, Any

from oneserver.driver_contract import DiskSpec, DriverError, HostRef, TMDriver, VMSpec

from .remote import Target, run, target_for_host

DEFAULT_DATASTORE_DIR = "/var/lib/oneserver/datastores/0"
# tar on a pipe cannot guess the compression, so it is chosen from the file name.
_COMPRESSION = (
    ((".tar.gz", ".tgz"), "-z"),
    ((".tar.xz", ".txz"), "-J"),
    ((".tar.bz2", ".tbz2"), "-j"),
    ((".tar",), ""),
)


class SshTM(TMDriver):
    """Options: ``datastore_dir`` (default ``/var/lib/oneserver/datastores/0``; a host's
    ``DATASTORE_DIR`` wins), ``ssh_command`` and ``ssh_user`` (a host's ``SSH_COMMAND``,
    ``SSH_USER``, ``SSH_HOST`` win), ``timeout`` (seconds per disk, default 1800)."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.timeout = float(self.options.get("timeout", 1800))

    def vm_dir(self, host: HostRef, vm: VMSpec) -> str:
        """The VM's directory on ``host``; refuses paths that could hit something else."""
        if vm.vm_dir:
            path = vm.vm_dir
        else:
            base = host.template.get("DATASTORE_DIR") or self.options.get(
                "datastore_dir", DEFAULT_DATASTORE_DIR)
            path = posixpath.join(str(base), str(vm.id))
        path = posixpath.normpath(path)
        if not path.startswith("/") or path.count("/") < 2:
            raise DriverError(f"refusing VM directory {path!r}: not an absolute, nested path")
        return path

    def prolog(self, host: HostRef, vm: VMSpec) -> str:
        """After success every disk is unpacked in ``<vm dir>/disk.<id>`` on the host. After
        failure the VM directory is gone. Whether the root disk boots (has the template's
        INIT) is the VMM's business: oned reports that as a boot failure, not a transfer one.
        Each disk costs one ssh round trip (its unpack creates the directories too)."""
        target = target_for_host(host, self.options)
        vm_dir = self.vm_dir(host, vm)
        try:
            if not vm.disks:
                self._sh(target, f"mkdir -p {shlex.quote(vm_dir)}", "create the VM directory")
            for disk in vm.disks:
                self._unpack(target, disk, posixpath.join(vm_dir, f"disk.{disk.disk_id}"))
        except BaseException:
            try:
                self._remove(target, vm_dir)
            except DriverError:
                pass  # report the original failure, not the cleanup's
            raise
        return vm_dir

    def epilog(self, host: HostRef, vm: VMSpec, keep_disks: bool = False) -> None:
        """After success the VM directory is gone (kept as is with ``keep_disks``)."""
        if keep_disks:
            return
        self._remove(target_for_host(host, self.options), self.vm_dir(host, vm))

    # --- steps ----------------------------------------------------------------------------

    def _unpack(self, target: Target, disk: DiskSpec, dst: str) -> None:
        source = disk.source
        what = f"disk {disk.disk_id} ({source}) on {target}"
        if os.path.isdir(source):
            flag = ""
            producer = subprocess.Popen(["tar", "-C", source, "--numeric-owner", "-cf", "-", "."],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            stream: IO[bytes] = producer.stdout  # type: ignore[assignment]
        elif os.path.isfile(source):
            flag = _compression_flag(source, disk.disk_id)
            producer = None
            stream = open(source, "rb")  # noqa: SIM115 - closed below
        else:
            raise DriverError(f"disk {disk.disk_id}: source {source} does not exist "
                              "(expected a rootfs tarball or directory)")
        q = shlex.quote(dst)
        script = (f"rm -rf {q} && mkdir -p {q} && "
                  f"tar -C {q} --numeric-owner {flag} -xf -").replace("  ", " ")
        try:
            res = run(target, script, stdin=stream, timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise DriverError(f"unpacking {what} timed out after {self.timeout:.0f} s") from exc
        except OSError as exc:
            raise DriverError(f"unpacking {what} failed: {exc}") from exc
        finally:
            stream.close()
            if producer is not None:
                producer.wait()
        if producer is not None and producer.returncode != 0:
            err = producer.stderr.read().decode(errors="replace") if producer.stderr else ""
            raise DriverError(f"reading {what} failed: {err.strip()[:500]}")
        if res.returncode != 0:
            kind = {"-z": "gzip", "-J": "xz", "-j": "bzip2"}.get(flag, "plain")
            raise DriverError(f"unpacking {what} failed (not a valid {kind} tar archive?): "
                              f"{res.stderr.decode(errors='replace').strip()[:500]}")

    def _remove(self, target: Target, vm_dir: str) -> None:
        self._sh(target, f"rm -rf {shlex.quote(vm_dir)}", f"remove {vm_dir}")

    def _sh(self, target: Target, script: str, what: str) -> None:
        try:
            res = run(target, script, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"could not {what} on {target}: {exc}") from exc
        if res.returncode != 0:
            raise DriverError(f"could not {what} on {target}: "
                              f"{res.stderr.decode(errors='replace').strip()[:500]}")


def _compression_flag(source: str, disk_id: int) -> str:
    name = source.lower()
    for suffixes, flag in _COMPRESSION:
        if name.endswith(suffixes):
            return flag
    raise DriverError(f"disk {disk_id}: {source} is neither a directory nor a .tar, .tar.gz, "
                      ".tar.xz or .tar.bz2 archive")
