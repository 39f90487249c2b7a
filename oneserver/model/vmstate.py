"""VM and host states, action codes and which action is valid in which state (OpenNebula 7.4,
reference §3). Numbers are the wire values; holes are kept."""

from __future__ import annotations

import enum


class VmState(enum.IntEnum):
    INIT = 0
    PENDING = 1
    HOLD = 2
    ACTIVE = 3
    STOPPED = 4
    SUSPENDED = 5
    DONE = 6
    POWEROFF = 8
    UNDEPLOYED = 9
    CLONING = 10
    CLONING_FAILURE = 11


class Lcm(enum.IntEnum):
    LCM_INIT = 0
    PROLOG = 1
    BOOT = 2
    RUNNING = 3
    MIGRATE = 4
    SAVE_STOP = 5
    SAVE_SUSPEND = 6
    SAVE_MIGRATE = 7
    PROLOG_MIGRATE = 8
    PROLOG_RESUME = 9
    EPILOG_STOP = 10
    EPILOG = 11
    SHUTDOWN = 12
    CLEANUP_RESUBMIT = 15
    UNKNOWN = 16
    HOTPLUG = 17
    SHUTDOWN_POWEROFF = 18
    BOOT_UNKNOWN = 19
    BOOT_POWEROFF = 20
    BOOT_SUSPENDED = 21
    BOOT_STOPPED = 22
    CLEANUP_DELETE = 23
    HOTPLUG_NIC = 25
    SHUTDOWN_UNDEPLOY = 29
    EPILOG_UNDEPLOY = 30
    PROLOG_UNDEPLOY = 31
    BOOT_UNDEPLOY = 32
    BOOT_MIGRATE = 35
    BOOT_FAILURE = 36
    BOOT_MIGRATE_FAILURE = 37
    PROLOG_MIGRATE_FAILURE = 38
    PROLOG_FAILURE = 39
    EPILOG_FAILURE = 40
    EPILOG_STOP_FAILURE = 41
    EPILOG_UNDEPLOY_FAILURE = 42
    PROLOG_MIGRATE_POWEROFF = 43
    PROLOG_MIGRATE_POWEROFF_FAILURE = 44
    PROLOG_MIGRATE_SUSPEND = 45
    PROLOG_MIGRATE_SUSPEND_FAILURE = 46
    BOOT_UNDEPLOY_FAILURE = 47
    BOOT_STOPPED_FAILURE = 48
    PROLOG_RESUME_FAILURE = 49
    PROLOG_UNDEPLOY_FAILURE = 50
    PROLOG_MIGRATE_UNKNOWN = 60
    PROLOG_MIGRATE_UNKNOWN_FAILURE = 61
    HOTPLUG_NIC_POWEROFF = 65
    HOTPLUG_RESIZE = 66


FAILURE_STATES = frozenset(s for s in Lcm if s.name.endswith("_FAILURE"))


class HostState(enum.IntEnum):
    INIT = 0
    MONITORED = 2
    ERROR = 3
    DISABLED = 4
    OFFLINE = 8


# History ACTION codes (VMActions.h).
HISTORY_ACTION = {
    "none": 0, "migrate": 1, "live-migrate": 2, "shutdown": 3, "shutdown-hard": 4,
    "undeploy": 5, "undeploy-hard": 6, "hold": 7, "release": 8, "stop": 9, "suspend": 10,
    "resume": 11, "boot": 12, "delete": 13, "delete-recreate": 14, "reboot": 15,
    "reboot-hard": 16, "resched": 17, "unresched": 18, "poweroff": 19, "poweroff-hard": 20,
    "nic-attach": 23, "nic-detach": 24,
    "terminate": 27, "terminate-hard": 28, "deploy": 30, "chown": 31, "chmod": 32,
    "updateconf": 33, "rename": 34, "resize": 35, "update": 36, "recover": 42, "retry": 43,
    "monitor": 44,
}


def state_name(state: int, lcm_state: int) -> str:
    """The name oned puts in "not available for state X": the LCM name when ACTIVE."""
    if state == VmState.ACTIVE:
        try:
            return Lcm(lcm_state).name
        except ValueError:
            return str(lcm_state)
    return VmState(state).name
