"""CPU time of a process tree, read from /proc (Linux only, no dependencies).

``tree_cpu(pid)`` is the user+system CPU seconds used so far by ``pid`` and every descendant,
live or already reaped: for each live process of the tree it adds utime+stime (its own time)
and cutime+cstime (the time of children it has waited for). A worker that exits between two
samples so stays counted, through its parent's cutime, and the difference of two samples is
the CPU the tree used in between.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcCPU:
    pid: int
    name: str
    user: float  # seconds, own + reaped children
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system


def read_stat(pid: int) -> ProcCPU | None:
    """One process's CPU times, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm is in parentheses and may hold spaces or parentheses: split after the last ')'.
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14..17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ProcCPU(pid, name, (utime + cutime) / CLK_TCK, (stime + cstime) / CLK_TCK)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from every thread's ``children`` file)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents before children."""
    seen, order, todo = {pid}, [pid], [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in seen:
                seen.add(child)
                order.append(child)
                todo.append(child)
    return order


def tree_stats(pid: int) -> list[ProcCPU]:
    """CPU times of every live process of the tree rooted at ``pid``."""
    return [s for s in (read_stat(p) for p in descendants(pid)) if s is not None]


def tree_cpu(pid: int) -> float:
    """User+system CPU seconds used so far by the tree rooted at ``pid``."""
    return sum(s.total for s in tree_stats(pid))


def self_cpu() -> float:
    """User+system CPU seconds of the calling process (threads included, children not)."""
    t = os.times()
    return t.user + t.system


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:] or [str(os.getpid())]:
        stats = tree_stats(int(arg))
        for s in stats:
            print(f"{s.pid:>8} {s.name:<20} user {s.user:9.2f}s  system {s.system:9.2f}s")
        print(f"{'':>8} {'total':<20} {sum(s.total for s in stats):.2f}s")
