"""NIC hot-plug on libvirt LXC: finding an interface in a running domain's XML, and the
commands that configure a hot-plugged interface inside the container.

libvirt 9 adds a hot-plugged veth to the container down, without the addresses of its
``<ip>`` elements, and named ``vnetN``; so after ``attachDeviceFlags`` the driver enters the
container's network namespace on the host (``nsenter`` on its init, the child of libvirt's
LXC controller, whose pid is the domain id), finds the interface by its MAC, names it
``eth<NIC_ID>`` when that name is free (as the interfaces a container boots with are named),
sets its addresses and routes, and brings it up.
"""

from __future__ import annotations

import shlex

from lxml import etree

from drivers.vn import names

from .domain_xml import BridgeInterface

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def live_interface(domain_xml: str, target: str) -> tuple[str, str] | None:
    """(the ``<interface>`` element as XML, its MAC) of the interface whose host end is
    ``target``, or None."""
    root = etree.fromstring(domain_xml.encode(), _PARSER)
    for iface in root.iterfind("devices/interface"):
        dev = iface.find("target")
        if dev is not None and dev.get("dev") == target:
            mac = iface.find("mac")
            return (etree.tostring(iface, encoding="unicode"),
                    mac.get("address", "") if mac is not None else "")
    return None


def configure_script(controller: int, mac: str, nic_id: int, iface: BridgeInterface) -> str:
    """Shell lines, run on the host, that configure the container's end of ``iface`` (found
    by ``mac``). Every value comes checked from the policy (addresses parsed), the MAC
    from libvirt is checked here."""
    q = shlex.quote
    mac = names.mac(mac, "the hot-plugged interface's MAC")
    lines = [
        f"ctl={int(controller)}",
        'pid=$(cut -d" " -f1 "/proc/$ctl/task/$ctl/children")',
        '[ -n "$pid" ] || { echo "no init under the controller $ctl" >&2; exit 1; }',
        'ct() { nsenter -t "$pid" -n "$@"; }',
        f'dev=$(ct ip -o link | grep -i "link/ether {mac} " '
        "| head -n 1 | cut -d: -f2 | cut -d@ -f1 | tr -d ' ')",
        f'[ -n "$dev" ] || {{ echo "no interface with MAC {mac} in the container" >&2; exit 1; }}',
        f"want=eth{int(nic_id)}",
        'if [ "$dev" != "$want" ] && ! ct ip link show dev "$want" >/dev/null 2>&1; then',
        '  ct ip link set dev "$dev" down',
        '  ct ip link set dev "$dev" name "$want"',
        '  dev=$want',
        "fi",
    ]
    for a in iface.addresses:
        cidr = a.address if a.prefix is None else f"{a.address}/{int(a.prefix)}"
        lines.append(f'ct ip addr replace {q(cidr)} dev "$dev"')
    lines.append('ct ip link set dev "$dev" up')
    for route in iface.routes:
        family = "-6" if route.family == "ipv6" else "-4"
        lines.append(f'ct ip {family} route replace default via {q(route.gateway)} dev "$dev"')
    return "\n".join(lines) + "\n"
