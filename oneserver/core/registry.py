"""Driver instances and their thread pools, configured from oned.conf's ``IM_MAD``, ``VM_MAD``
and ``TM_MAD`` blocks (``-t`` threads, ``-r`` retries)."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from oneserver import driver_contract as dc
from oneserver.template import Template

T = TypeVar("T")
DEFAULT_THREADS = 15


@dataclass(frozen=True)
class DriverConf:
    threads: int = DEFAULT_THREADS
    retries: int = 0
    options: dict[str, str] | None = None


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


def driver_confs(conf: Template, block: str) -> dict[str, DriverConf]:
    out = {}
    for vec in conf.vectors(block):
        name = vec.get("NAME") or vec.get("name")
        if name:
            out[name] = parse_arguments(vec.get("ARGUMENTS", ""))
    return out


class Registry:
    def __init__(self, oned_conf: Template) -> None:
        # "ds" (DS_MAD blocks): the pool that copies images into datastores, in the core.
        self._confs = {kind: driver_confs(oned_conf, f"{kind.upper()}_MAD")
                       for kind in ("im", "vm", "tm", "ds")}
        self._drivers: dict[tuple[str, str], Any] = {}
        self._pools: dict[tuple[str, str], ThreadPoolExecutor] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        # Handed to every TM driver: where transfers report progress (set by the core).
        self.progress_sink: dc.ProgressSink | None = None

    def conf(self, kind: str, name: str) -> DriverConf:
        return self._confs["vm" if kind == "vmm" else kind].get(name, DriverConf())

    def driver(self, kind: str, name: str) -> Any:
        """The instance of driver ``name`` (im, vmm or tm); DriverError if not installed."""
        key = (kind, name)
        with self._lock:
            if key not in self._drivers:
                drv = dc.load(kind, name, self.conf(kind, name).options)
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
                if kind in ("tm", "vmm"):
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
