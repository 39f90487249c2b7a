"""The ``ssh`` transfer driver: disks are unpacked onto the host locally or over ssh."""

from .tm import SshTM

__all__ = ["SshTM"]
