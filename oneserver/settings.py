"""Runtime settings shared by the API workers and the core: where data lives, which database,
the parsed configuration files. Built once per process from flags, environment and files."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from oneserver.template import Template, parse_text

ETC = Path(__file__).resolve().parent.parent / "etc"


@dataclass
class Settings:
    data_dir: str
    db_url: str
    oned_conf: Template = field(default_factory=Template)
    sched_conf: Template = field(default_factory=Template)
    vmm_defaults: dict[str, Template] = field(default_factory=dict)

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

    def conf_int(self, name: str, default: int) -> int:
        try:
            return int(self.oned_conf.get_str(name, str(default)))
        except ValueError:
            return default


_current: Settings | None = None


def read_conf(path: Path) -> Template:
    """Read an OpenNebula-syntax configuration file (missing file: empty)."""
    if not path.is_file():
        return Template()
    return parse_text(path.read_text())


def configure(data_dir: str, db_url: str | None = None, etc_dir: str | None = None) -> Settings:
    global _current
    data_dir = os.path.abspath(data_dir)
    etc = Path(etc_dir) if etc_dir else ETC
    vmm: dict[str, Template] = {}
    vmm_dir = etc / "vmm_exec"
    if vmm_dir.is_dir():
        for conf in sorted(vmm_dir.glob("vmm_exec_*.conf")):
            vmm[conf.stem.removeprefix("vmm_exec_")] = read_conf(conf)
    _current = Settings(
        data_dir=data_dir,
        db_url=db_url or f"sqlite:///{os.path.join(data_dir, 'one.db')}",
        oned_conf=read_conf(etc / "oned.conf"),
        sched_conf=read_conf(etc / "sched.conf"),
        vmm_defaults=vmm,
    )
    return _current


def current() -> Settings:
    if _current is None:
        return configure(os.environ.get("ONESERVER_DATA", "data"),
                         os.environ.get("ONESERVER_DB"))
    return _current
