"""Driver instances and their thread pools, configured from oned.conf's ``IM_MAD``, ``VM_MAD``,
``TM_MAD`` and ``VN_MAD`` blocks (``-t`` threads, ``-r`` retries)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import Distribution, distributions, entry_points
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from oneserver import driver_contract as dc
from oneserver.template import Template

T = TypeVar("T")
DEFAULT_THREADS = 15
log = logging.getLogger("oneserver.drivers")


@dataclass(frozen=True)
class DriverConf:
    threads: int = DEFAULT_THREADS
    retries: int = 0
    options: dict[str, str] | None = None
    executable: str | None = None  # the plug-in (entry point) behind this NAME; None: NAME


def parse_arguments(arguments: str) -> DriverConf:
    """``-r 3 -t 15 -o KEY=VALUE …`` as oned's drivers read them (unknown flags ignored)."""
    words = shlex.split(arguments)
    threads, retries, options = DEFAULT_THREADS, 0, {}
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w == "-t" and nxt.isdigit():
            threads, i = max(1, int(nxt)), i + 1
        elif w == "-r" and nxt.isdigit():
            retries, i = int(nxt), i + 1
        elif w == "-o" and "=" in nxt:
            key, _, value = nxt.partition("=")
            options[key] = value
            i += 1
        i += 1
    return DriverConf(threads, retries, options)


def _pip_install(dist: Distribution, extra: str) -> str:
    """The command that adds ``extra`` to this installation of ``dist``: from the directory
    pip installed it from (editable or not), else by name. The checkout's own ``*.egg-info``
    may be found first on the path; pip's record is in the installed copy's metadata."""
    for found in distributions(name=dist.name):
        info = json.loads(found.read_text("direct_url.json") or "{}")
        url = urlsplit(info.get("url", ""))
        if url.scheme == "file":
            editable = "-e " if info.get("dir_info", {}).get("editable") else ""
            return f"{sys.executable} -m pip install {editable}'{unquote(url.path)}[{extra}]'"
    return f"{sys.executable} -m pip install '{dist.name}[{extra}]'"


def load_failure(kind: str, name: str, exc: Exception) -> str:
    """Why driver ``name`` can't be used, and for a missing module what to install: a plug-in
    named like an extra of its distribution (``lxc``) needs that extra."""
    what = f"cannot load the {name} {kind.upper()} driver: {exc.__class__.__name__}: {exc}"
    if not isinstance(exc, ImportError):
        return what
    found = entry_points(group=dc.GROUPS[kind], name=name)
    dist = next(iter(found)).dist if found else None
    if dist is not None and name in (dist.metadata.get_all("Provides-Extra") or []):
        return f"{what}; install it with: {_pip_install(dist, name)}"
    return f"{what}; install the Python package that provides {exc.name or 'it'}"


def driver_confs(conf: Template, block: str) -> dict[str, DriverConf]:
    out: dict[str, DriverConf] = {}
    for vec in conf.vectors(block):
        name = vec.get("NAME") or vec.get("name")
        if name:
            # As oned: NAME is what hosts and datastores say, EXECUTABLE the driver that runs,
            # so one plug-in can serve under several names with different options (e.g. a
            # second lxc driver whose ssh reaches a lab's hosts).
            parsed = parse_arguments(vec.get("ARGUMENTS", ""))
            executable = vec.get("EXECUTABLE") or vec.get("executable")
            out[name] = dataclasses.replace(parsed, executable=executable or None)
    return out


class Registry:
    def __init__(self, oned_conf: Template) -> None:
        # "ds" (DS_MAD blocks): the pool that copies images into datastores, in the core.
        self._confs = {kind: driver_confs(oned_conf, f"{kind.upper()}_MAD")
                       for kind in ("im", "vm", "tm", "ds", "vn")}
        self._drivers: dict[tuple[str, str], Any] = {}
        self._pools: dict[tuple[str, str], ThreadPoolExecutor] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        # Load failures already logged: the monitor retries a host's driver every interval.
        self._reported: set[str] = set()
        # Handed to every TM driver: where transfers report progress (set by the core).
        self.progress_sink: dc.ProgressSink | None = None

    def conf(self, kind: str, name: str) -> DriverConf:
        return self._confs["vm" if kind == "vmm" else kind].get(name, DriverConf())

    def driver(self, kind: str, name: str) -> Any:
        """The instance of driver ``name`` (im, vmm or tm); DriverError if it is not installed
        or can't be loaded (a module it imports is missing, its constructor fails): the host or
        VM then shows why, and the log says it once."""
        key = (kind, name)
        with self._lock:
            if key not in self._drivers:
                try:
                    conf = self.conf(kind, name)
                    drv = dc.load(kind, conf.executable or name, conf.options)
                except dc.DriverError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any plug-in failure is the driver's
                    message = load_failure(kind, name, exc)
                    if message not in self._reported:
                        self._reported.add(message)
                        log.error("%s", message, exc_info=not isinstance(exc, ImportError))
                    raise dc.DriverError(message) from exc
                if kind == "tm":
                    drv.progress = self.progress_sink
                self._drivers[key] = drv
            return self._drivers[key]

    def tm_metrics(self, host: str) -> dict[str, str]:
        """What the loaded TM drivers count about ``host`` (cache hits, bytes sent…)."""
        with self._lock:
            tms = [d for (kind, _), d in self._drivers.items() if kind == "tm"]
        out: dict[str, str] = {}
        for drv in tms:
            metrics = getattr(drv, "metrics", None)
            if metrics is not None:
                out.update(metrics(host))
        return out

    def submit(self, kind: str, name: str, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn`` on the pool of driver ``name``, bounded by its ``-t`` threads."""
        key = (kind, name)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = ThreadPoolExecutor(self.conf(kind, name).threads,
                                          thread_name_prefix=f"{kind}-{name}")
                self._pools[key] = pool
        return pool.submit(fn, *args)

    def _slots_of(self, kind: str, name: str) -> threading.BoundedSemaphore:
        key = f"{kind}:{name}"
        with self._lock:
            slots = self._slots.get(key)
            if slots is None:
                slots = self._slots[key] = threading.BoundedSemaphore(
                    self.conf(kind, name).threads)
            return slots

    def call(self, kind: str, name: str, method: str, *args: Any) -> Any:
        """Call a driver method with the driver's ``-r`` retries on DriverError (an unreachable
        host is not retried: the monitor decides about hosts). VM operations run on the
        executor's threads; a VMM or TM call holds one of its driver's ``-t`` slots only while
        it runs, so transfers are bounded by the TM and boots by the VMM, independently (as
        OpenNebula's separate driver processes are)."""
        drv = self.driver(kind, name)
        attempts = self.conf(kind, name).retries + 1
        for attempt in range(attempts):
            try:
                if kind in ("tm", "vmm", "vn"):
                    with self._slots_of(kind, name):
                        return getattr(drv, method)(*args)
                return getattr(drv, method)(*args)
            except dc.HostUnreachable:
                raise
            except dc.DriverError:
                if attempt + 1 == attempts:
                    raise
        return None

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        for drv in self._drivers.values():
            try:
                drv.close()
            except Exception:  # noqa: BLE001 - closing must not stop the others
                pass
