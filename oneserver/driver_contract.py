"""The contract every driver plug-in follows: IM (monitor a host), VMM (run a VM on a host), TM
(prepare and clean a VM's disks on a host) and VN (a VM's network on a host).

Plug-ins are found by entry-point name in the groups ``oneserver.im``, ``oneserver.vmm``,
``oneserver.tm`` and ``oneserver.vn``; the name is the one a host is created with (``onehost
create h1 --im lxc --vm lxc``), a system datastore's ``TM_MAD`` or a NIC's ``VN_MAD``. A third
party ships a package that declares those entry points and never touches core code.

Vocabulary: *vm_id* is OpenNebula's integer id; *deploy_id* is the hypervisor's name for the
domain (``one-<vm_id>`` for LXC). A deploy_id never leaves the driver except through the values
returned here, which the core stores and hands back.

Every call runs in the core process, on a worker thread of the driver's pool, never in an API
worker. The core runs at most one call per VM at a time, in the order the operations were
queued. A call that fails raises :class:`DriverError` with a message meant for the VM's
``USER_TEMPLATE/ERROR``; after a failure the host must be left as the docstring says.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any


class DriverError(Exception):
    """A driver call failed. ``str(error)`` is shown to the user."""


class HostUnreachable(DriverError):
    """The host could not be reached at all (not the same as a failed action on it)."""


class Capability(enum.Enum):
    """What a VMM driver can do. The API refuses an action whose capability is missing with
    OpenNebula's ``ACTION`` error, before anything is changed."""

    SHUTDOWN = "shutdown"            # graceful stop (terminate, poweroff, undeploy)
    CANCEL = "cancel"                # hard stop (-hard variants)
    REBOOT = "reboot"
    RESET = "reset"                  # reboot-hard
    SUSPEND = "suspend"              # suspend/resume keeping memory (LXC: freezer)
    MIGRATE_COLD = "migrate"
    MIGRATE_LIVE = "migrate-live"
    RESIZE_LIVE = "resize-live"      # change CPU/memory of a running VM
    NIC_HOTPLUG = "nic-hotplug"      # attach/detach a NIC of a running VM


@dataclass(frozen=True)
class HostRef:
    """The host a call targets, as the core knows it."""

    id: int
    name: str
    # Host TEMPLATE plus the cluster's template (host values win); e.g. a per-host libvirt URI.
    template: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DiskSpec:
    """One DISK of a VM after the core resolved it."""

    disk_id: int
    source: str                      # path to a rootfs tarball/directory, or an image's source
    target: str = "/"                # mount point inside the container
    type: str = "FILE"
    readonly: bool = False
    size_mb: int | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NicSpec:
    """One NIC (or NIC_ALIAS) of a VM as oned writes it into the VM TEMPLATE. Values are the
    template's strings, unchecked: drivers validate whatever they hand to a host."""

    nic_id: int
    bridge: str | None = None
    mac: str | None = None
    ip: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)
    # The host end of the NIC's interface (oned's TARGET, ``one-<vm id>-<nic id>``): the name
    # the VMM gives it and the VN driver filters on.
    target: str | None = None
    # The VN driver that sets the NIC up on the host; None: none (the bridge is the host's).
    vn_mad: str | None = None
    # NIC_ALIAS entries whose PARENT is this NIC: more addresses on the same interface.
    aliases: tuple[NicSpec, ...] = ()

    @property
    def security_groups(self) -> tuple[int, ...]:
        """The ids in SECURITY_GROUPS (``"0,100"``); words that are no ids are left out."""
        raw = self.attrs.get("SECURITY_GROUPS", "")
        return tuple(int(w) for w in raw.split(",") if w.strip().isdigit())


@dataclass(frozen=True)
class SecurityRule:
    """One SECURITY_GROUP_RULE of the VM (the rules of every group its NICs name, copied in
    by oned). Values are the template's strings, unchecked; a VN driver that filters refuses
    what it cannot express."""

    security_group_id: int
    protocol: str                     # ALL, TCP, UDP, ICMP, ICMPV6, IPSEC
    rule_type: str                    # INBOUND or OUTBOUND (either case)
    range: str | None = None          # ports: "22,80,1000:2000" (TCP, UDP)
    icmp_type: str | None = None
    icmpv6_type: str | None = None
    ip: str | None = None             # first address of a block of SIZE addresses
    size: str | None = None
    network_id: str | None = None


@dataclass(frozen=True)
class VMSpec:
    """Everything a driver needs to run one VM. Built by the core from the VM's TEMPLATE merged
    with the ``vmm_exec_<driver>.conf`` defaults; drivers must not read the database."""

    id: int
    name: str
    cpu: float                       # share of a physical CPU (CPU=0.5 is half a core)
    vcpu: int
    memory_mb: int
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    security_rules: tuple[SecurityRule, ...] = ()
    # The whole VM TEMPLATE as nested mappings (vector attributes are lists of mappings),
    # for attributes a driver reads on its own (INIT, RAW, CONTEXT…).
    template: Mapping[str, Any] = field(default_factory=dict)
    deploy_id: str | None = None     # set once deployed
    vm_dir: str | None = None        # per-VM directory on the host (set by the TM)


@dataclass(frozen=True)
class VMStatus:
    """One VM as the host reports it."""

    deploy_id: str
    state: str                       # RUNNING, POWEROFF, SUSPENDED, UNKNOWN (monitord names)
    vm_id: int | None = None         # None: not ours (a wild VM)
    cpu: float = 0.0                 # % of one CPU
    memory_kb: int = 0
    netrx: int = 0
    nettx: int = 0


@dataclass(frozen=True)
class HostMonitor:
    """One monitoring sample of a host. Units follow OpenNebula: CPU in % of one core (4 cores =
    400), memory in KB, disk in MB."""

    total_cpu: int
    total_mem_kb: int
    used_cpu: int = 0
    used_mem_kb: int = 0
    free_disk_mb: int = 0
    total_disk_mb: int = 0
    used_disk_mb: int = 0
    netrx: int = 0
    nettx: int = 0
    # Informative attributes merged into the host TEMPLATE (HYPERVISOR, VERSION, ARCH, MODELNAME,
    # CPUSPEED, HOSTNAME…).
    info: Mapping[str, str] = field(default_factory=dict)
    # Every domain found on the host. None means "this driver does not report VMs" (the core
    # then leaves VM states alone); an empty tuple means "no VM runs here".
    vms: tuple[VMStatus, ...] | None = None


class IMDriver(abc.ABC):
    """Monitors hosts."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: Mapping[str, Any] = dict(options or {})

    @abc.abstractmethod
    def monitor(self, host: HostRef) -> HostMonitor:
        """Sample the host. Raises :class:`HostUnreachable` when the host does not answer (the
        core then turns it ERROR and its VMs UNKNOWN). Must not change anything on the host."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Called when the core stops."""


class VMMDriver(abc.ABC):
    """Runs VMs on hosts."""

    capabilities: frozenset[Capability] = frozenset()
    # Drivers whose hosts are models, not machines (dummy, sim), name the TM driver that models
    # their disks; the system datastore's TM_MAD is used otherwise.
    transfer_driver: str | None = None
    # True when the VMs get real interfaces on real hosts: the core then runs the VN drivers
    # of their NICs around them (models such as dummy and sim leave the hosts alone).
    runs_vn_drivers: bool = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: Mapping[str, Any] = dict(options or {})

    @abc.abstractmethod
    def deploy(self, host: HostRef, vm: VMSpec) -> str:
        """Create and start the VM; return its deploy_id. After success the VM is running on
        the host. On failure nothing of the VM remains defined on the host (its disks are the
        TM's business)."""

    @abc.abstractmethod
    def shutdown(self, host: HostRef, vm: VMSpec, timeout: float) -> None:
        """Ask the guest to stop and wait up to ``timeout`` seconds, then stop it hard. After
        success the VM no longer runs and its domain is gone from the host."""

    @abc.abstractmethod
    def cancel(self, host: HostRef, vm: VMSpec) -> None:
        """Stop the VM at once. After success its domain is gone. Succeeds if it is already
        gone (so a retried cancel never fails on its own earlier success)."""

    def reboot(self, host: HostRef, vm: VMSpec) -> None:
        """Restart the guest gracefully; after success it runs again."""
        raise DriverError("reboot is not supported by this driver")

    def reset(self, host: HostRef, vm: VMSpec) -> None:
        """Restart the guest hard; after success it runs again."""
        raise DriverError("reset is not supported by this driver")

    def suspend(self, host: HostRef, vm: VMSpec) -> None:
        """Pause the guest keeping its memory; after success it is SUSPENDED on the host."""
        raise DriverError("suspend is not supported by this driver")

    def resume(self, host: HostRef, vm: VMSpec) -> None:
        """Undo :meth:`suspend`; after success it runs again."""
        raise DriverError("resume is not supported by this driver")

    def resize(self, host: HostRef, vm: VMSpec) -> None:
        """Apply ``vm.cpu``/``vm.vcpu``/``vm.memory_mb`` to the running VM."""
        raise DriverError("live resize is not supported by this driver")

    def attach_nic(self, host: HostRef, vm: VMSpec, nic: NicSpec) -> None:
        """Give the running VM the interface ``nic`` (one of ``vm.nics``, with its aliases),
        on its bridge with its TARGET, MAC and addresses (one.vm.attachnic; capability
        NIC_HOTPLUG). After success the guest has it. On failure nothing of it remains on the
        host: the core takes the NIC and its lease back. Succeeds if the interface is already
        there (a retried attach after a crash)."""
        raise DriverError("NIC hotplug is not supported by this driver")

    def detach_nic(self, host: HostRef, vm: VMSpec, nic: NicSpec) -> None:
        """Remove the interface ``nic`` (still in ``vm.nics``) from the running VM
        (one.vm.detachnic). After success it is gone from the guest and the host, and the core
        gives its lease back; on failure the VM keeps it. Succeeds if it is already gone."""
        raise DriverError("NIC hotplug is not supported by this driver")

    @abc.abstractmethod
    def poll(self, host: HostRef, vm: VMSpec) -> VMStatus:
        """Report one VM's state. A VM that is gone reports state POWEROFF."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Called when the core stops."""


# Told how far a VM's transfer got: (vm id, bytes done, bytes in all or 0 if unknown). Returns
# False when the transfer should stop (the VM left its PROLOG state, e.g. a recover --delete):
# the driver then aborts, cleans up as after any failure, and raises DriverError.
ProgressSink = Callable[[int, int, int], bool]


class TMDriver(abc.ABC):
    """Moves a VM's disks to and from a host."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: Mapping[str, Any] = dict(options or {})
        # Set by the core; a driver that streams data reports through it (None: nobody asks).
        self.progress: ProgressSink | None = None

    def metrics(self, host: str) -> Mapping[str, str]:
        """Counters of this driver about host ``host`` (e.g. cache hits), merged into the
        host's monitoring TEMPLATE. None by default."""
        return {}

    @abc.abstractmethod
    def prolog(self, host: HostRef, vm: VMSpec) -> str:
        """Put every disk of the VM in place on the host; return the VM's directory there.
        On failure whatever was copied is removed."""

    @abc.abstractmethod
    def epilog(self, host: HostRef, vm: VMSpec, keep_disks: bool = False) -> None:
        """Remove the VM's directory from the host (or, with ``keep_disks``, leave the disks for
        a later resume on the same host). Called only after the domain is gone. Succeeds if
        nothing is left to remove."""

    def save(self, host: HostRef, vm: VMSpec, disk: DiskSpec, dest: str) -> bool:
        """Write the disk's current content on ``host``, as a gzip tar archive, to ``dest`` on
        this machine (a persistent image's datastore). Called before the epilog that removes
        the disk. After a failure nothing is left at ``dest``. False when this driver can't
        (the image then keeps its content)."""
        return False

    def move(self, src: HostRef, dst: HostRef, vm: VMSpec) -> str | None:
        """Cold migration: carry the VM's directory, as the stopped VM left it, from ``src`` to
        ``dst``; return its directory on ``dst``. After success it is on ``dst`` and gone from
        ``src``; after a failure ``src`` is untouched and nothing is left on ``dst``. Returns
        None when this driver can't move disks between hosts: the core then rebuilds them on
        ``dst`` from their sources (prolog) after removing them from ``src`` (epilog)."""
        return None


class VNCapability(enum.Enum):
    """What a VN driver does on a host."""

    BRIDGE = "bridge"                # creates the NIC's Linux bridge when it is missing
    SECURITY_GROUPS = "security-groups"  # the VM's security group rules filter its packets
    OVERLAY = "overlay"              # links the bridge to the other hosts (VXLAN)
    VLAN = "vlan"                    # tags the network's traffic (802.1Q) on PHYDEV


class VNDriver(abc.ABC):
    """Sets up a VM's networks on a host, as OpenNebula's VNM drivers do: ``pre`` before the
    VM starts there, ``post`` once it runs, ``clean`` after it left.

    The core calls the driver named by the ``VN_MAD`` of each NIC, with a VMSpec whose
    ``nics`` holds only that driver's NICs (and, when one NIC is attached or detached, only
    that one); ``security_rules`` and ``template`` are the VM's. Every call may be repeated
    (the core resumes its steps after a crash): a repeated call converges on the same host
    state and never fails on its own earlier success. A failed call leaves nothing of its
    own behind on the host and raises :class:`DriverError`.
    """

    capabilities: frozenset[VNCapability] = frozenset()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: Mapping[str, Any] = dict(options or {})

    @abc.abstractmethod
    def pre(self, host: HostRef, vm: VMSpec) -> None:
        """Before the VM's domain starts on ``host``: after success everything its NICs
        attach to exists there (e.g. each NIC's BRIDGE, up, with PHYDEV or a VXLAN device in
        it). Refuses a NIC it cannot set up (a bad name, a missing PHYDEV)."""

    @abc.abstractmethod
    def post(self, host: HostRef, vm: VMSpec) -> None:
        """After the domain started: after success what applies to the running interfaces
        is in place (e.g. the security group filters on each NIC's TARGET)."""

    @abc.abstractmethod
    def clean(self, host: HostRef, vm: VMSpec) -> None:
        """After the domain stopped on ``host`` (or one NIC was detached): after success
        nothing this driver set up for those NICs is left there (no filter rule; a bridge
        it created only while other interfaces still use it, or as configured). Succeeds
        when there is nothing to remove."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Called when the core stops."""


GROUPS = {"im": "oneserver.im", "vmm": "oneserver.vmm", "tm": "oneserver.tm",
          "vn": "oneserver.vn"}


def load(kind: str, name: str, options: Mapping[str, Any] | None = None) -> Any:
    """Instantiate the driver plug-in ``name`` of ``kind`` (im, vmm, tm or vn)."""
    found = entry_points(group=GROUPS[kind], name=name)
    if not found:
        raise DriverError(f"no {kind} driver named {name!r}")
    cls = next(iter(found)).load()
    return cls(options)
