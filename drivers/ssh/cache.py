"""The host-side image cache of the ssh transfer driver.

The first VM that needs an image on a host unpacks it into ``<cache dir>/<sha256>/rootfs`` on
that host; later VMs copy from there (``cp -a --reflink=auto``: a reflink where the filesystem
can, a local copy otherwise; or a hard-link tree with ``CACHE_COPY=hardlink``), with no byte
crossing the network.

Entries are written atomically: unpacked into ``.tmp.<sha>.<random>``, a manifest of the tree
(path, type, size, mode of every file) hashed into ``OK`` last, flushed with ``sync -f``, then
renamed into place. An entry without ``OK`` is never used; an entry whose tree no longer
matches its manifest is corrupt: it is dropped and filled again. ``by-image/<image id>`` records
which checksum an image had, so a changed image drops its old entry. The cache is bounded by
size; the least recently used entries (``.used`` mtime) are evicted first, never one in use.

Everything runs as shell snippets on the host (``sh``, GNU tar, find, cp, sha256sum); the
bookkeeping of who uses which entry lives here, in the core, which is the only writer."""

from __future__ import annotations

import posixpath
import shlex
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Path, type, size and mode of everything in the tree, sorted: the manifest an entry must match.
MANIFEST = ("find . -printf '%P %y %s %m\\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1")


@dataclass(frozen=True)
class Entry:
    sha: str
    size_kb: int
    used: int  # mtime of .used: when a VM last took it


def q(path: str) -> str:
    return shlex.quote(path)


def copy_command(mode: str, src: str, dst: str) -> str:
    if mode == "hardlink":
        return f"cp -al {q(src)} {q(dst)}"
    return f"cp -a --reflink=auto {q(src)} {q(dst)}"


def take_script(cache: str, sha: str, image_id: str | None, dst: str, mode: str) -> str:
    """Probe the entry and, if sound, copy it to ``dst``. Prints HIT, MISS or CORRUPT (the
    corrupt entry is removed), and DROPPED <sha> when the image's old entry was dropped."""
    e = posixpath.join(cache, sha)
    lines = ["set -e", f"C={q(cache)}", f"E={q(e)}", 'mkdir -p "$C/by-image"']
    if image_id:
        ptr = posixpath.join(cache, "by-image", image_id)
        lines += [
            f"old=$(cat {q(ptr)} 2>/dev/null || true)",
            f'if [ -n "$old" ] && [ "$old" != {q(sha)} ] && [ -d "$C/$old" ]; then',
            '  t="$C/.trash.$old.$$"; mv "$C/$old" "$t" && rm -rf "$t"; echo "DROPPED $old"',
            "fi",
            f"echo {q(sha)} > {q(ptr)}.$$ && mv {q(ptr)}.$$ {q(ptr)}",
        ]
    lines += [
        'if [ ! -f "$E/OK" ]; then echo MISS; exit 0; fi',
        'read sha kb mh < "$E/OK"',
        f'now=$(cd "$E/rootfs" && {MANIFEST})',
        f'if [ "$sha" != {q(sha)} ] || [ "$mh" != "$now" ]; then',
        '  t="$C/.trash.$$"; mv "$E" "$t" && rm -rf "$t"; echo CORRUPT; exit 0',
        "fi",
        f"rm -rf {q(dst)}",
        f"mkdir -p {q(posixpath.dirname(dst))}",
        copy_command(mode, f"{e}/rootfs", dst),
        'touch "$E/.used"',
        "echo HIT",
    ]
    return "\n".join(lines)


def fill_script(cache: str, sha: str, flag: str, dst: str, mode: str) -> tuple[str, str]:
    """(script, temp dir): unpack stdin into a temp entry, seal it, publish it, copy it to
    ``dst``; then list every entry (``ENTRY <used> <kb> <sha>``) for eviction."""
    tmp = posixpath.join(cache, f".tmp.{sha}.{uuid.uuid4().hex[:8]}")
    e = posixpath.join(cache, sha)
    script = "\n".join([
        "set -e",
        f"C={q(cache)}", f"T={q(tmp)}", f"E={q(e)}",
        # Temp dirs of fills killed long ago (a crashed core): never used, only removed.
        'mkdir -p "$C"; find "$C" -maxdepth 1 -name ".tmp.*" -mmin +120 -exec rm -rf {} + '
        "2>/dev/null || true",
        'rm -rf "$T"; mkdir -p "$T/rootfs"',
        f'tar -C "$T/rootfs" --numeric-owner {flag} -xf -'.replace("  ", " "),
        f'mh=$(cd "$T/rootfs" && {MANIFEST})',
        'kb=$(du -sk "$T/rootfs" | cut -f1)',
        'touch "$T/.used"',
        f'echo {q(sha)} "$kb" "$mh" > "$T/OK"',
        'sync -f "$T/OK" 2>/dev/null || sync',
        # A sealed entry of a concurrent filler (another core after a failover) wins; an
        # unsealed one (no OK: a crash mid-way) is junk and makes way. mv -T never nests.
        'if [ -f "$E/OK" ]; then rm -rf "$T"; else',
        '  if [ -e "$E" ]; then t="$C/.trash.$$"; mv -T "$E" "$t" && rm -rf "$t"; fi',
        '  mv -T "$T" "$E" || rm -rf "$T"',
        "fi",
        f"rm -rf {q(dst)}",
        f"mkdir -p {q(posixpath.dirname(dst))}",
        copy_command(mode, f"{e}/rootfs", dst),
        'touch "$E/.used"',
        'for ok in "$C"/*/OK; do',
        '  [ -f "$ok" ] || continue; d=${ok%/OK}; read s k m < "$ok" || continue',
        '  echo "ENTRY $(stat -c %Y "$d/.used" 2>/dev/null || echo 0) $k ${d##*/}"',
        "done",
    ])
    return script, tmp


def evict_script(cache: str, shas: list[str]) -> str:
    lines = ["set -e"]
    for sha in shas:
        e = posixpath.join(cache, sha)
        t = posixpath.join(cache, f".trash.{sha}.{uuid.uuid4().hex[:8]}")
        lines.append(f"if [ -d {q(e)} ]; then mv {q(e)} {q(t)} && rm -rf {q(t)}; fi")
    return "\n".join(lines)


def parse_entries(out: str) -> list[Entry]:
    entries = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "ENTRY":
            try:
                entries.append(Entry(parts[3], int(parts[2]), int(parts[1])))
            except ValueError:
                continue
    return entries


def victims(entries: list[Entry], max_kb: int, keep: set[str]) -> list[str]:
    """Least recently used entries to remove until the cache fits ``max_kb``; entries in
    ``keep`` (in use, or just filled) stay even if the cache then stays over its bound."""
    total = sum(e.size_kb for e in entries)
    out = []
    for e in sorted(entries, key=lambda e: e.used):
        if total <= max_kb:
            break
        if e.sha in keep:
            continue
        out.append(e.sha)
        total -= e.size_kb
    return out


class Bookkeeping:
    """Per host: which entries are being read (never evicted then), one filler per entry, a
    bound on concurrent transfers, and counters for the host's monitoring."""

    def __init__(self, host_transfers: int) -> None:
        self.host_transfers = max(1, host_transfers)
        self._lock = threading.Lock()
        self._in_use: Counter[tuple[str, str]] = Counter()
        self._fill_locks: dict[tuple[str, str], threading.Lock] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self.counters: dict[str, Counter[str]] = {}

    def count(self, host: str, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters.setdefault(host, Counter())[name] += n

    def slot(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._slots.get(host)
            if sem is None:
                sem = self._slots[host] = threading.BoundedSemaphore(self.host_transfers)
            return sem

    def fill_lock(self, host: str, sha: str) -> threading.Lock:
        with self._lock:
            return self._fill_locks.setdefault((host, sha), threading.Lock())

    @contextmanager
    def using(self, host: str, sha: str) -> Iterator[None]:
        with self._lock:
            self._in_use[(host, sha)] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_use[(host, sha)] -= 1
                if self._in_use[(host, sha)] <= 0:
                    del self._in_use[(host, sha)]

    def in_use(self, host: str) -> set[str]:
        with self._lock:
            return {sha for (h, sha), n in self._in_use.items() if h == host and n > 0}
