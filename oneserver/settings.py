"""Runtime settings shared by the API workers and the core: where data lives, which database,
the parsed configuration files. Built once per process from flags, environment and files."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from oneserver.template import Template, parse_text

# The default configuration: the checkout's etc/ (oneserver/etc links to it), shipped inside
# the package by a non-editable install.
ETC = (Path(__file__).parent / "etc").resolve()
# oned's default is 1 GiB; a request is held in memory whole before it is parsed, and no call
# needs more than a few MB.
MESSAGE_SIZE = 32 * 1024 * 1024


@dataclass
class Settings:
    data_dir: str
    db_url: str
    oned_conf: Template = field(default_factory=Template)
    sched_conf: Template = field(default_factory=Template)
    vmm_defaults: dict[str, Template] = field(default_factory=dict)
    # The configuration files found and read, in that order (none: built-in defaults).
    files: list[str] = field(default_factory=list)

    @property
    def wakeup_socket(self) -> str:
        """An abstract unix socket (Linux) named after the data directory: no file to clean up
        and no path-length limit, and two servers with different data never cross."""
        digest = hashlib.sha256(self.data_dir.encode()).hexdigest()[:24]
        return f"\0oneserver-{digest}"

    @property
    def datastores_dir(self) -> str:
        return self.oned_conf.get_str("DATASTORE_LOCATION") or os.path.join(
            self.data_dir, "datastores")

    @property
    def message_size(self) -> int:
        """The longest XML-RPC request accepted, in bytes (oned.conf's MESSAGE_SIZE)."""
        return self.conf_int("MESSAGE_SIZE", MESSAGE_SIZE)

    def conf_int(self, name: str, default: int) -> int:
        try:
            return int(self.oned_conf.get_str(name, str(default)))
        except ValueError:
            return default


_current: Settings | None = None


def read_conf(path: Path, read: list[str] | None = None) -> Template:
    """Read an OpenNebula-syntax configuration file (missing file: empty), noting its path in
    ``read`` when it was there."""
    if not path.is_file():
        return Template()
    if read is not None:
        read.append(str(path.absolute()))
    return parse_text(path.read_text())


def configure(data_dir: str, db_url: str | None = None, etc_dir: str | None = None) -> Settings:
    global _current
    data_dir = os.path.abspath(data_dir)
    etc = Path(etc_dir) if etc_dir else ETC
    read: list[str] = []
    oned_conf = read_conf(etc / "oned.conf", read)
    sched_conf = read_conf(etc / "sched.conf", read)
    vmm: dict[str, Template] = {}
    vmm_dir = etc / "vmm_exec"
    if vmm_dir.is_dir():
        for conf in sorted(vmm_dir.glob("vmm_exec_*.conf")):
            vmm[conf.stem.removeprefix("vmm_exec_")] = read_conf(conf, read)
    _current = Settings(
        data_dir=data_dir,
        db_url=db_url or f"sqlite:///{os.path.join(data_dir, 'one.db')}",
        oned_conf=oned_conf,
        sched_conf=sched_conf,
        vmm_defaults=vmm,
        files=read,
    )
    return _current


def current() -> Settings:
    if _current is None:
        return configure(os.environ.get("ONESERVER_DATA", "data"),
                         os.environ.get("ONESERVER_DB"))
    return _current
