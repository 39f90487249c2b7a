"""LXC through libvirt: the ``lxc`` IM and VMM drivers.

``domain_xml`` is mechanism (objects <-> XML), ``policy`` decides what a VM becomes,
``connection`` finds and caches host connections, ``vmm``/``im`` implement the contract.
"""

from .im import LxcIM
from .vmm import LxcVMM

__all__ = ["LxcIM", "LxcVMM"]
