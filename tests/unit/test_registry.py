"""Driver configuration from oned.conf: ``-t`` threads and ``-r`` retries are honoured, and
vmm_exec defaults reach every VM of that driver."""

from __future__ import annotations

import threading
import time

import pytest

from oneserver import settings
from oneserver.core.registry import Registry, parse_arguments
from oneserver.core.specs import vm_spec
from oneserver.driver_contract import DriverError, HostUnreachable
from oneserver.template import Template, parse_text


def test_arguments_are_read_like_onedrivers() -> None:
    conf = parse_arguments("-r 3 -t 100 -o HOST_TRANSFERS=4 -w 90 lxc")
    assert (conf.threads, conf.retries, conf.options) == (100, 3, {"HOST_TRANSFERS": "4"})
    assert parse_arguments("").threads == 15


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = DriverError) -> None:
        self.calls, self.failures, self.error = 0, failures, error

    def act(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error("not yet")
        return "done"


def registry(conf: str) -> Registry:
    return Registry(parse_text(conf))


def test_retries_come_from_the_r_flag() -> None:
    reg = registry('VM_MAD = [ NAME = "x", ARGUMENTS = "-r 2 -t 1" ]')
    reg._drivers[("vmm", "x")] = drv = Flaky(2)
    assert reg.call("vmm", "x", "act") == "done" and drv.calls == 3
    reg._drivers[("vmm", "x")] = drv = Flaky(3)
    with pytest.raises(DriverError):
        reg.call("vmm", "x", "act")
    assert drv.calls == 3


def test_an_unreachable_host_is_not_retried() -> None:
    reg = registry('IM_MAD = [ NAME = "x", ARGUMENTS = "-r 5" ]')
    reg._drivers[("im", "x")] = drv = Flaky(1, HostUnreachable)
    with pytest.raises(HostUnreachable):
        reg.call("im", "x", "act")
    assert drv.calls == 1


def test_tm_threads_bound_concurrent_transfers() -> None:
    reg = registry('TM_MAD = [ NAME = "t", ARGUMENTS = "-t 2" ]')
    running, peak, lock = 0, 0, threading.Lock()

    class Slow:
        def prolog(self) -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1

    reg._drivers[("tm", "t")] = Slow()
    threads = [threading.Thread(target=reg.call, args=("tm", "t", "prolog")) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_vmm_exec_defaults_fill_what_the_vm_does_not_set(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(settings, "_current", None)  # restored after the test
    etc = tmp_path / "etc"
    (etc / "vmm_exec").mkdir(parents=True)
    (etc / "vmm_exec" / "vmm_exec_lxc.conf").write_text('INIT = "/sbin/init"\nLXC_X = "1"\n')
    settings.configure(str(tmp_path / "data"), "sqlite:///:memory:", str(etc))
    vm = {"id": 7, "name": "v", "deploy_id": "", "history": [],
          "template": Template([("CPU", "1"), ("MEMORY", "64"), ("INIT", "/bin/sh")]).to_json()}
    spec = vm_spec(vm, "lxc", vm_dir="/x")
    assert spec.template["INIT"] == "/bin/sh"  # the VM's own value wins
    assert spec.template["LXC_X"] == "1"
    assert "LXC_X" not in vm_spec(vm, "dummy", vm_dir="/x").template


def test_a_name_can_run_another_plugin_with_its_own_options() -> None:
    """As oned's EXECUTABLE: a second name for a plug-in, configured apart (e.g. an lxc driver
    whose ssh reaches a lab's hosts), with nothing in any host template."""
    conf = parse_text('VM_MAD = [ NAME = "dummy-lab", EXECUTABLE = "dummy", '
                      'ARGUMENTS = "-t 3 -o fail=deploy" ]\n')
    reg = Registry(conf)
    assert reg.conf("vmm", "dummy-lab").executable == "dummy"
    drv = reg.driver("vmm", "dummy-lab")
    assert type(drv).__name__ == "DummyVMM" and drv.options["fail"] == "deploy"
