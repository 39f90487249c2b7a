"""Time ``wire.parse_call`` on the request bodies of typical calls (no server involved).

Usage: python tools/bench_wire.py [--rounds 60] [--against OLD_WIRE_PY]

Prints the CPU time per call, the best of ``--rounds`` rounds (the process's CPU time, so
other load on the machine shows up less than in wall time). ``--against`` loads another
version of ``oneserver/wire.py`` (e.g. ``git show HEAD~1:oneserver/wire.py > /tmp/w.py``)
and times it in the same rounds, interleaved, for an A/B comparison.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import xmlrpc.client
from pathlib import Path
from types import ModuleType

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oneserver import wire  # noqa: E402

SESSION = "oneadmin:0123456789abcdef"
BODIES: dict[str, tuple[bytes, int]] = {
    "one.vm.info": (xmlrpc.client.dumps((SESSION, 5), "one.vm.info").encode(), 1000),
    "one.vmpool.info": (xmlrpc.client.dumps((SESSION, -2, -1, -1, -1),
                                            "one.vmpool.info").encode(), 1000),
    "one.vm.allocate": (xmlrpc.client.dumps((SESSION, "NAME=x\nCPU=0.1\nMEMORY=64", True),
                                            "one.vm.allocate").encode(), 1000),
    "1,000 ints": (xmlrpc.client.dumps((SESSION, "u", "p", "", list(range(1000))),
                                       "one.user.allocate").encode(), 50),
}


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("wire_other", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best(module: ModuleType, body: bytes, calls: int, best_so_far: float) -> float:
    start = time.process_time()
    for _ in range(calls):
        module.parse_call(body)
    return min(best_so_far, (time.process_time() - start) / calls)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--against", help="another wire.py to time in the same rounds")
    args = ap.parse_args()
    versions = {"this": wire}
    if args.against:
        versions["other"] = load(args.against)
    for name, (body, calls) in BODIES.items():
        times = dict.fromkeys(versions, float("inf"))
        for _ in range(args.rounds):
            for label, module in versions.items():
                times[label] = best(module, body, calls, times[label])
        line = "  ".join(f"{label} {t * 1e6:8.2f} us" for label, t in times.items())
        if "other" in times:
            line += f"  ({(times['this'] / times['other'] - 1) * 100:+.0f}%)"
        print(f"{name:16s} {len(body):6d} B  {line}")


if __name__ == "__main__":
    main()
