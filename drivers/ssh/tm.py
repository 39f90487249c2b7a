"""SshTM: put a container's disks on a host, and remove them afterwards.

Each disk SOURCE lives on the machine running the core (an image datastore): a root filesystem
tarball (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.xz``/``.txz``, ``.tar.bz2``) or a directory. It is
streamed as a tar archive into ``tar -x`` on the host, run locally for ``localhost`` and through
ssh otherwise, into ``<datastore_dir>/<vm id>/disk.<disk id>``.

A disk from an image (its DISK carries the image's ``SHA256``) goes through the host-side cache
(``cache.py``): streamed once per host and image, then copied on the host. Transfers report
their progress to the core and stop when it says so; each host takes at most
``HOST_TRANSFERS`` disk placements at once, so one host's disk is not swamped while the
driver's ``-t`` threads serve many hosts.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from oneserver import archives
from oneserver.driver_contract import DiskSpec, DriverError, HostRef, TMDriver, VMSpec

from . import cache
from .remote import Target, run, target_for_host

DEFAULT_DATASTORE_DIR = "/var/lib/oneserver/datastores/0"
CHUNK = 1 << 20
PROGRESS_EVERY = 0.5  # seconds between reports to the core (it writes at most once a second)


class Cancelled(DriverError):
    """The core asked the transfer to stop."""


class SshTM(TMDriver):
    """Options (``-o KEY=VALUE``; a host template attribute ``TM_<KEY>`` wins where noted):
    ``datastore_dir`` (default ``/var/lib/oneserver/datastores/0``; a host's ``DATASTORE_DIR``
    wins), ``ssh_command`` (only here: a host template never names a program) and
    ``ssh_user`` (a host's ``SSH_USER`` and ``SSH_HOST`` win), ``timeout`` (seconds per disk,
    default 1800), ``HOST_TRANSFERS``
    (concurrent disk placements per host, default 4), ``CACHE`` (``yes``/``no``),
    ``CACHE_DIR`` (default ``<datastore_dir>/../../tm-cache/<host name>``, per host name so
    hosts sharing a filesystem keep apart), ``CACHE_MAX_MB`` (default 20480), ``CACHE_COPY``
    (``reflink``: ``cp -a --reflink=auto``, safe for writable rootfs; ``hardlink``: a hard-link
    tree, fastest, for read-only root filesystems), ``BW_LIMIT_MBPS`` (MB/s per transfer) and
    ``FETCHES`` (streams from the front-end at once, over all hosts, default 4; cache hits are
    local copies and don't count)."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.timeout = float(self.options.get("timeout", 1800))
        self.books = cache.Bookkeeping(int(self._opt(None, "HOST_TRANSFERS", "4")))
        self.fetch_slots = threading.BoundedSemaphore(max(1, int(self._opt(None, "FETCHES",
                                                                          "4"))))

    # --- configuration --------------------------------------------------------------------

    def _opt(self, host: HostRef | None, name: str, default: str) -> str:
        if host is not None and host.template.get(f"TM_{name}"):
            return str(host.template[f"TM_{name}"])
        for key in (name, name.lower()):
            if self.options.get(key) not in (None, ""):
                return str(self.options[key])
        return default

    def _datastore_dir(self, host: HostRef) -> str:
        return str(host.template.get("DATASTORE_DIR") or self.options.get(
            "datastore_dir", DEFAULT_DATASTORE_DIR))

    def cache_dir(self, host: HostRef) -> str:
        default = posixpath.join(posixpath.dirname(posixpath.dirname(
            posixpath.normpath(self._datastore_dir(host)))), "tm-cache", host.name)
        return posixpath.normpath(self._opt(host, "CACHE_DIR", default))

    def vm_dir(self, host: HostRef, vm: VMSpec) -> str:
        """The VM's directory on ``host``; refuses paths that could hit something else."""
        path = vm.vm_dir or posixpath.join(self._datastore_dir(host), str(vm.id))
        path = posixpath.normpath(path)
        if not path.startswith("/") or path.count("/") < 2:
            raise DriverError(f"refusing VM directory {path!r}: not an absolute, nested path")
        return path

    def metrics(self, host: str) -> Mapping[str, str]:
        with self.books._lock:
            counts = dict(self.books.counters.get(host, {}))
        return {f"TM_{k.upper()}": str(v) for k, v in sorted(counts.items())}

    # --- contract -------------------------------------------------------------------------

    def prolog(self, host: HostRef, vm: VMSpec) -> str:
        """After success every disk is unpacked in ``<vm dir>/disk.<id>`` on the host. After
        failure the VM directory is gone. Whether the root disk boots (has the template's
        INIT) is the VMM's business: oned reports that as a boot failure, not a transfer one.
        Each disk costs one ssh round trip (two when an image is not yet in the host's cache)."""
        target = target_for_host(host, self.options)
        vm_dir = self.vm_dir(host, vm)
        try:
            if not vm.disks:
                self._sh(target, f"mkdir -p {shlex.quote(vm_dir)}", "create the VM directory")
            for disk in vm.disks:
                with self.books.slot(host.name):
                    self._place(target, host, vm, disk,
                                posixpath.join(vm_dir, f"disk.{disk.disk_id}"))
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

    def save(self, host: HostRef, vm: VMSpec, disk: DiskSpec, dest: str) -> bool:
        """A persistent image's disk goes back as ``tar -cz`` of its directory on the host,
        streamed into ``dest`` here."""
        target = target_for_host(host, self.options)
        src = posixpath.join(self.vm_dir(host, vm), f"disk.{disk.disk_id}")
        try:
            with open(dest, "wb") as out:
                res = subprocess.run(
                    target.argv(f"tar -C {shlex.quote(src)} --numeric-owner -czf - ."),
                    stdout=out, stderr=subprocess.PIPE, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            raise DriverError(f"could not save disk {disk.disk_id} from {target}: {exc}") from exc
        if res.returncode != 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            raise DriverError(f"could not save disk {disk.disk_id} from {target}: "
                              f"{res.stderr.decode(errors='replace').strip()[:500]}")
        return True

    def move(self, src: HostRef, dst: HostRef, vm: VMSpec) -> str:
        """Cold migration: ``tar`` on the source piped through this machine into ``tar`` on the
        destination, into ``<dir>.migrating``; then the source copy is removed and the new one
        renamed into place. That order also holds when both hosts share one filesystem (the
        lab's namespace hosts): the copy never lands on the directory it is read from."""
        src_t, dst_t = target_for_host(src, self.options), target_for_host(dst, self.options)
        src_dir, dst_dir = self.vm_dir(src, vm), self.vm_dir(dst, vm)
        part = dst_dir + ".migrating"
        with self.fetch_slots, self.books.slot(dst.name):
            self._pipe(src_t, f"tar -C {shlex.quote(src_dir)} --numeric-owner -cf - .",
                       dst_t, f"rm -rf {shlex.quote(part)} && mkdir -p {shlex.quote(part)} && "
                       f"tar -C {shlex.quote(part)} --numeric-owner -xpf -",
                       cleanup=f"rm -rf {shlex.quote(part)}")
        self._remove(src_t, src_dir)
        self._sh(dst_t, f"rm -rf {shlex.quote(dst_dir)} && mv {shlex.quote(part)} "
                        f"{shlex.quote(dst_dir)}", f"put {dst_dir} in place")
        self.books.count(dst.name, "transfers")
        return dst_dir

    def _pipe(self, src: Target, produce: str, dst: Target, consume: str, cleanup: str) -> None:
        """Run ``produce`` on ``src`` with its output fed to ``consume`` on ``dst``; on any
        failure run ``cleanup`` on ``dst`` and raise."""
        producer = subprocess.Popen(src.argv(produce), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        try:
            consumer = subprocess.run(dst.argv(consume), stdin=producer.stdout,
                                      capture_output=True, timeout=self.timeout)
            assert producer.stdout is not None
            producer.stdout.close()
            err = producer.stderr.read() if producer.stderr else b""
            code = producer.wait(self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            producer.kill()
            self._sh(dst, cleanup, "clean up a failed move")
            raise DriverError(f"could not move the disks from {src} to {dst}: {exc}") from exc
        if code != 0 or consumer.returncode != 0:
            self._sh(dst, cleanup, "clean up a failed move")
            detail = (err or consumer.stderr).decode(errors="replace").strip()[:500]
            raise DriverError(f"could not move the disks from {src} to {dst}: {detail}")

    # --- placing one disk -----------------------------------------------------------------

    def _place(self, target: Target, host: HostRef, vm: VMSpec, disk: DiskSpec,
               dst: str) -> None:
        sha = disk.attrs.get("SHA256", "")
        if sha and self._opt(host, "CACHE", "yes").lower() in ("yes", "true", "1"):
            self._place_cached(target, host, vm, disk, dst, sha)
            return
        q = shlex.quote(dst)
        self._stream(target, host, vm, disk,
                     lambda flag: (f"rm -rf {q} && mkdir -p {q} && "
                                   f"tar -C {q} --numeric-owner {flag} -xf -"))
        self.books.count(host.name, "transfers")

    def _place_cached(self, target: Target, host: HostRef, vm: VMSpec, disk: DiskSpec,
                      dst: str, sha: str) -> None:
        books, name = self.books, host.name
        cdir, mode = self.cache_dir(host), self._opt(host, "CACHE_COPY", "reflink")
        image_id = disk.attrs.get("IMAGE_ID") or None
        with books.using(name, sha):
            if self._take(target, cdir, sha, image_id, dst, mode, name):
                return
            # One filler per entry and host; the others wait for it, then hit.
            with books.fill_lock(name, sha):
                if self._take(target, cdir, sha, image_id, dst, mode, name):
                    return
                books.count(name, "cache_misses")
                script, tmp = None, ""

                def fill(flag: str) -> str:
                    nonlocal script, tmp
                    script, tmp = cache.fill_script(cdir, sha, flag, dst, mode)
                    return script

                try:
                    out = self._stream(target, host, vm, disk, fill)
                except BaseException:
                    if tmp:  # a killed fill leaves its temp entry: never used, remove it now
                        try:
                            self._sh(target, f"rm -rf {shlex.quote(tmp)}", "clean the cache")
                        except DriverError:
                            pass
                    raise
                books.count(name, "transfers")
            max_kb = int(float(self._opt(host, "CACHE_MAX_MB", "20480")) * 1024)
            doomed = cache.victims(cache.parse_entries(out), max_kb,
                                   books.in_use(name) | {sha})
            if doomed:
                self._sh(target, cache.evict_script(cdir, doomed), "evict cache entries")
                books.count(name, "cache_evictions", len(doomed))

    def _take(self, target: Target, cdir: str, sha: str, image_id: str | None, dst: str,
              mode: str, name: str) -> bool:
        out = self._sh(target, cache.take_script(cdir, sha, image_id, dst, mode),
                       "read the image cache")
        words = out.split()
        if "DROPPED" in words:
            self.books.count(name, "cache_dropped")
        if "CORRUPT" in words:
            self.books.count(name, "cache_corrupt")
        if "HIT" in words:
            self.books.count(name, "cache_hits")
            return True
        return False

    # --- streaming ------------------------------------------------------------------------

    def _stream(self, target: Target, host: HostRef, vm: VMSpec, disk: DiskSpec,
                script_for: Any) -> str:
        """Stream one disk from the front-end, at most ``FETCHES`` at once over all hosts: a
        few streams finish one after another, so early hosts boot while later ones still
        fetch (sharing the uplink among all would make every transfer end together)."""
        with self.fetch_slots:
            return self._stream_now(target, host, vm, disk, script_for)

    def _stream_now(self, target: Target, host: HostRef, vm: VMSpec, disk: DiskSpec,
                    script_for: Any) -> str:
        """Feed the disk's source as a tar stream into ``script_for(tar flag)`` on the
        target, reporting progress; returns the script's output."""
        source = disk.source
        what = f"disk {disk.disk_id} ({source}) on {target}"
        producer: subprocess.Popen[bytes] | None = None
        if os.path.isdir(source):
            flag, total = "", (disk.size_mb or 0) * 2**20
            producer = subprocess.Popen(
                ["tar", "-C", source, "--numeric-owner", "-cf", "-", "."],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            stream: IO[bytes] = producer.stdout  # type: ignore[assignment]
        elif os.path.isfile(source):
            flag, total = _compression_flag(source, disk.disk_id), os.path.getsize(source)
            stream = open(source, "rb")  # noqa: SIM115 - closed below
        else:
            raise DriverError(f"disk {disk.disk_id}: source {source} does not exist "
                              "(expected a rootfs tarball or directory)")
        script = script_for(flag).replace("  ", " ")
        limit = float(self._opt(host, "BW_LIMIT_MBPS", "0") or 0) * 2**20
        try:
            # Locally, its own process group: an abort kills the whole pipeline (sh, tar),
            # whose members would otherwise keep our pipes open. Not for ssh: a ControlMaster
            # it spawns serves other sessions and must survive the abort of this one.
            proc = subprocess.Popen(target.argv(script), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=target.is_local)
        except OSError as exc:
            stream.close()
            raise DriverError(f"unpacking {what} failed: {exc}") from exc
        reader = _Drain(proc)
        sent, started, reported = 0, time.monotonic(), 0.0
        try:
            assert proc.stdin is not None
            while chunk := stream.read(CHUNK):
                try:
                    proc.stdin.write(chunk)
                except BrokenPipeError:
                    break  # the far side stopped reading: its exit status says why
                sent += len(chunk)
                self.books.count(host.name, "bytes_sent", len(chunk))
                now = time.monotonic()
                if limit and sent / limit > now - started:
                    time.sleep(sent / limit - (now - started))
                if self.progress is not None and now - reported >= PROGRESS_EVERY:
                    reported = now
                    if not self.progress(vm.id, sent, max(total, sent)):
                        raise Cancelled(f"transfer of {what} cancelled: the VM left PROLOG")
                if now - started > self.timeout:
                    raise DriverError(f"unpacking {what} timed out after {self.timeout:.0f} s")
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            proc.wait(timeout=max(1.0, self.timeout - (time.monotonic() - started)))
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                if target.is_local:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise DriverError(f"unpacking {what} timed out after {self.timeout:.0f} s"
                                  ) from exc
            raise
        finally:
            stream.close()  # a producer still writing gets EPIPE and exits
            if producer is not None:
                producer.wait()
            reader.join()
        if proc.returncode != 0:
            kind = {"-z": "gzip", "-J": "xz", "-j": "bzip2"}.get(flag, "plain")
            raise DriverError(f"unpacking {what} failed (not a valid {kind} tar archive?): "
                              f"{reader.err.decode(errors='replace').strip()[:500]}")
        if producer is not None and producer.returncode != 0:
            err = producer.stderr.read().decode(errors="replace") if producer.stderr else ""
            raise DriverError(f"reading {what} failed: {err.strip()[:500]}")
        if self.progress is not None:
            self.progress(vm.id, sent, sent)
        return reader.out.decode(errors="replace")

    def _remove(self, target: Target, vm_dir: str) -> None:
        self._sh(target, f"rm -rf {shlex.quote(vm_dir)}", f"remove {vm_dir}")

    def _sh(self, target: Target, script: str, what: str) -> str:
        try:
            res = run(target, script, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"could not {what} on {target}: {exc}") from exc
        if res.returncode != 0:
            raise DriverError(f"could not {what} on {target}: "
                              f"{res.stderr.decode(errors='replace').strip()[:500]}")
        return res.stdout.decode(errors="replace")


class _Drain:
    """Reads a child's stdout and stderr while we write its stdin, so neither side blocks."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.out, self.err = b"", b""
        self._threads = [threading.Thread(target=self._read, args=(proc.stdout, "out"),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(proc.stderr, "err"),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, pipe: IO[bytes] | None, name: str) -> None:
        if pipe is not None:
            setattr(self, name, pipe.read())

    def join(self, timeout: float = 30.0) -> None:
        # Bounded: after an abort over ssh, a connection master may hold the pipes a while.
        for t in self._threads:
            t.join(timeout)


def _compression_flag(source: str, disk_id: int) -> str:
    """The tar flag for ``source``: from its first bytes (an image in a datastore has no
    meaningful name), else from its name."""
    fmt = archives.sniff(source)
    if fmt is not None:
        return archives.TAR_FLAGS[fmt]
    raise DriverError(f"disk {disk_id}: {source} is neither a directory nor a .tar, .tar.gz, "
                      ".tar.xz or .tar.bz2 archive")
