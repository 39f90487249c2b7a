"""Every kind of document the server sends, read from a live server with its objects in several
states: what ``test_xsd_documents.py`` validates against ``schemas/`` (and the reference
cross-check against oned's own XSDs).

:data:`METHODS` names the schema of each method that answers a document; :func:`collect` makes
the objects (each name carries a random tag: the server is shared by the session) and reads
every document once per server.
"""

from __future__ import annotations

import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xsd  # tests/api/xsd.py, beside this file
from conftest import Server, wait_for

# Method → the schema file of its answer (vmpool.infoset(ids, true) answers full bodies).
METHODS: dict[str, str] = {
    "one.vm.info": "vm.xsd",
    "one.vmpool.info": xsd.VM_POOL_SHORT,
    "one.vmpool.infoset": xsd.VM_POOL_SHORT,
    "one.vmpool.infoextended": xsd.VM_POOL_FULL,
    "one.vmpool.accounting": "accounting.xsd",
    "one.vm.monitoring": xsd.VM_SAMPLES,
    "one.vmpool.monitoring": xsd.VM_SAMPLES,
    "one.host.info": "host.xsd",
    "one.hostpool.info": "host_pool.xsd",
    "one.host.monitoring": xsd.HOST_SAMPLES,
    "one.hostpool.monitoring": xsd.HOST_SAMPLES,
    "one.image.info": "image.xsd",
    "one.imagepool.info": "image_pool.xsd",
    "one.datastore.info": "datastore.xsd",
    "one.datastorepool.info": "datastore_pool.xsd",
    "one.cluster.info": "cluster.xsd",
    "one.clusterpool.info": "cluster_pool.xsd",
    "one.user.info": "user.xsd",
    "one.userpool.info": "user_pool.xsd",
    "one.group.info": "group.xsd",
    "one.grouppool.info": "group_pool.xsd",
    "one.template.info": "vmtemplate.xsd",
    "one.templatepool.info": "vmtemplate_pool.xsd",
    "one.acl.info": "acl_pool.xsd",
    "one.system.config": "opennebula_configuration.xsd",
    "one.zone.raftstatus": "raft.xsd",
    "one.vn.info": "vnet.xsd",
    "one.vnpool.info": "vnet_pool.xsd",
    "one.secgroup.info": "security_group.xsd",
    "one.secgrouppool.info": "security_group_pool.xsd",
    "one.vntemplate.info": "vntemplate.xsd",
    "one.vntemplatepool.info": "vntemplate_pool.xsd",
    "one.zone.info": "zone.xsd",
    "one.zonepool.info": "zone_pool.xsd",
    "one.vdc.info": "vdc.xsd",
    "one.vdcpool.info": "vdc_pool.xsd",
}
# Methods that answer a string which is not a document.
NOT_DOCUMENTS = {
    "one.system.version": "the version, 7.4.0",
    "one.user.login": "the token itself (it shows up in the user's LOGIN_TOKEN)",
}

PASSWORD = "pw"
VM = 'NAME="{name}"\nCPU=0.1\nMEMORY=32\n'
# Never placed by the scheduler: VMs of this module only go where they are deployed.
NOWHERE = 'SCHED_REQUIREMENTS="ID = -1"\n'
HOLD, ACTIVE, POWEROFF, DONE = 2, 3, 8, 6
RUNNING = 3
MONITORED, ERROR = 2, 3
IMAGE_READY, IMAGE_ERROR = 1, 5


@dataclass(frozen=True)
class Document:
    method: str
    params: tuple[Any, ...]
    state: str  # what the objects in it are like, for failure messages
    schema: str
    xml: str

    def __str__(self) -> str:
        return f"{self.method}{self.params} ({self.state})"


_collected: dict[tuple[str, Path], list[Document]] = {}


def collect(server: Server) -> list[Document]:
    """The documents of ``server``, made once per server (tests of several modules read them;
    a server is known by its URL and its data directory, which no other server shares)."""
    key = (server.url, server.data_dir)
    if key not in _collected:
        _collected[key] = _Scenario(server).run()
    return _collected[key]


class _Scenario:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.tag = uuid.uuid4().hex[:6]
        self.docs: list[Document] = []
        self.user_session = ""

    # ------------------------------------------------------------------ helpers

    def name(self, base: str) -> str:
        return f"doc-{base}-{self.tag}"

    def ok(self, method: str, *params: Any, session: str | None = None) -> Any:
        reply = self.server.call(method, *params, session=session)
        assert reply[0] is True, (method, params, reply)
        return reply[1]

    def take(self, method: str, *params: Any, state: str, schema: str | None = None,
             session: str | None = None) -> str:
        xml = self.ok(method, *params, session=session)
        self.docs.append(Document(method, params, state, schema or METHODS[method], xml))
        return xml

    def vm(self, base: str, extra: str = "", hold: bool = True,
           session: str | None = None) -> int:
        return self.ok("one.vm.allocate", VM.format(name=self.name(base)) + NOWHERE + extra,
                       hold, session=session)

    def deploy(self, vid: int, hid: int) -> None:
        self.ok("one.vm.deploy", vid, hid, False, -1, "")
        self.server.wait_vm(vid, ACTIVE, RUNNING)

    def host_state(self, hid: int, *states: int) -> None:
        def seen() -> bool:
            body = self.ok("one.host.info", hid, False)
            return any(f"<STATE>{s}</STATE>" in body for s in states)
        wait_for(f"host {hid} in {states}", seen)

    # ------------------------------------------------------------------ the scenario

    def run(self) -> list[Document]:
        with tempfile.TemporaryDirectory(prefix="docs-") as tmp:
            hosts = self.hosts()
            images = self.images(Path(tmp))
            vms = self.vms(hosts, images)
            self.host_documents(hosts)
            self.vm_documents(vms)
            self.image_documents(images)
            self.identity_documents()
            self.infrastructure_documents(hosts)
            self.template_documents()
            self.network_documents()
            self.system_documents()
        return self.docs

    def hosts(self) -> dict[str, int]:
        h = {"a": self.ok("one.host.allocate", self.name("ha"), "dummy", "dummy", -1),
             "b": self.ok("one.host.allocate", self.name("hb"), "dummy", "dummy", -1)}
        self.take("one.host.info", h["a"], False, state="a host as soon as allocated")
        h["off"] = self.ok("one.host.allocate", self.name("hoff"), "dummy", "dummy", -1)
        self.ok("one.host.status", h["off"], 2)
        h["disabled"] = self.ok("one.host.allocate", self.name("hdis"), "dummy", "dummy", -1)
        # No such monitoring driver: the host turns ERROR without a sample.
        h["error"] = self.ok("one.host.allocate", self.name("herr"), "nosuch", "dummy", -1)
        # A sim host boots its VMs at once and reports them: the source of VM samples.
        h["sim"] = self.ok("one.host.allocate", self.name("hsim"), "sim", "sim", -1)
        self.ok("one.host.update", h["sim"], 'SIM_BOOT_S="0"\nSIM_BOOT_DIST="fixed"\n', 1)
        for key in ("a", "b", "disabled", "sim"):
            self.host_state(h[key], MONITORED)
        self.host_state(h["error"], ERROR)
        self.ok("one.host.status", h["disabled"], 1)
        return h

    def images(self, tmp: Path) -> dict[str, int]:
        tree = tmp / "rootfs"
        (tree / "sbin").mkdir(parents=True)
        (tree / "sbin" / "init").write_text("#!/bin/sh\nexec sleep 1000\n")
        good, bad = tmp / "rootfs.tar.gz", tmp / "noinit.tar.gz"
        with tarfile.open(good, "w:gz") as tar:
            tar.add(tree, arcname=".")
        with tarfile.open(bad, "w:gz") as tar:
            tar.add(tree / "sbin", arcname="./bin")
        ds = self.ok("one.datastore.allocate",
                     f'NAME="{self.name("imgds")}"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
                     f'RESTRICTED_DIRS="/"\nSAFE_DIRS="{tmp}"\n', -1)
        img = {"ds": ds}
        for key, path, extra in (("ready", good, 'DESCRIPTION="a <b> & c"\n'),
                                 ("persistent", good, 'PERSISTENT="YES"\n'),
                                 ("error", bad, "")):
            img[key] = self.ok("one.image.allocate",
                               f'NAME="{self.name(key)}"\nPATH="{path}"\n{extra}', ds)
        for key, state in (("ready", IMAGE_READY), ("persistent", IMAGE_READY),
                           ("error", IMAGE_ERROR)):
            wait_for(f"image {key}", lambda i=img[key], s=state:
                     f"<STATE>{s}</STATE>" in self.ok("one.image.info", i, False))
        return img

    def vms(self, hosts: dict[str, int], images: dict[str, int]) -> dict[str, int]:
        v = {"held": self.vm("held", 'LABELS="a,b"\nDESCRIPTION="x <y> & z"\n')}
        v["pending"] = self.vm("pending", hold=False)
        v["running"] = self.vm("running", 'DISK=[SIZE=10,TYPE=fs]\nNIC=[IP="10.0.0.1"]\n'
                                          'SCHED_RANK="FREE_CPU"\nUSER_PRIORITY="1"\n')
        self.deploy(v["running"], hosts["a"])
        v["image"] = self.vm("image", f'DISK=[IMAGE_ID={images["ready"]}]\n'
                                      f'DISK=[IMAGE_ID={images["persistent"]}]\n')
        self.deploy(v["image"], hosts["a"])
        v["migrated"] = self.vm("migrated")
        self.deploy(v["migrated"], hosts["a"])
        self.ok("one.vm.migrate", v["migrated"], hosts["b"], False, False, -1, 0)
        self.server.wait_vm(v["migrated"], ACTIVE, RUNNING)
        v["off"] = self.vm("off")
        self.deploy(v["off"], hosts["a"])
        self.ok("one.vm.action", "poweroff-hard", v["off"])
        self.server.wait_vm(v["off"], POWEROFF)
        v["done"] = self.vm("done")
        self.deploy(v["done"], hosts["b"])
        self.ok("one.vm.action", "terminate-hard", v["done"])
        self.server.wait_vm(v["done"], DONE)
        v["locked"] = self.vm("locked")
        self.ok("one.vm.lock", v["locked"], 1, False)
        v["sim"] = self.vm("sim")
        self.deploy(v["sim"], hosts["sim"])
        # Enabling a host samples it at once: the sample reports the running VM.
        self.ok("one.host.status", hosts["sim"], 1)
        self.ok("one.host.status", hosts["sim"], 0)
        wait_for("a VM sample", lambda: "<MONITORING><" in self.ok("one.vm.monitoring", v["sim"]))
        return v

    def host_documents(self, h: dict[str, int]) -> None:
        for key, state in (("a", "monitored, running VMs"), ("b", "monitored, a migrated VM"),
                           ("off", "offline"), ("disabled", "disabled"),
                           ("error", "in ERROR, never monitored"),
                           ("sim", "a sim host reporting its VM")):
            self.take("one.host.info", h[key], False, state=f"host {state}")
        self.take("one.hostpool.info", state="every host")
        self.take("one.host.monitoring", h["a"], state="a monitored host")
        self.take("one.host.monitoring", h["error"], state="a host never monitored: no sample")
        for seconds in (-1, 0, 3600):
            self.take("one.hostpool.monitoring", seconds, state=f"seconds={seconds}")

    def vm_documents(self, v: dict[str, int]) -> None:
        for key, state in (("held", "HOLD, user attributes with markup"),
                           ("pending", "PENDING, never placed"),
                           ("running", "RUNNING with a disk and a NIC"),
                           ("image", "RUNNING with image disks"),
                           ("migrated", "RUNNING after a migration: two history records"),
                           ("off", "POWEROFF"), ("done", "DONE"), ("locked", "locked, HOLD"),
                           ("sim", "RUNNING on a sim host, monitored")):
            self.take("one.vm.info", v[key], state=f"VM {state}")
        for params, state in (((-2, -1, -1, -1), "all but DONE"),
                              ((-2, -1, -1, -2), "every VM, DONE too"),
                              ((-2, -1, -1, DONE), "DONE only"),
                              ((-2, 0, -3, -2), "a page of three"),
                              ((-2, 99999, -1, -1), "no VM")):
            self.take("one.vmpool.info", *params, state=state)
            self.take("one.vmpool.infoextended", *params, state=state)
        ids = ",".join(str(i) for i in v.values())
        self.take("one.vmpool.infoset", ids, False, state="short bodies of every state")
        self.take("one.vmpool.infoset", ids, True, state="full bodies of every state",
                  schema=xsd.VM_POOL_FULL)
        self.take("one.vm.monitoring", v["sim"], state="a monitored VM")
        self.take("one.vm.monitoring", v["held"], state="a VM never monitored: no sample")
        for seconds in (-1, 0, 3600):
            self.take("one.vmpool.monitoring", -2, seconds, state=f"seconds={seconds}")
        self.take("one.vmpool.accounting", -2, -1, -1, state="every record")
        self.take("one.vmpool.accounting", -2, 0, 1, state="a period with no record")

    def image_documents(self, img: dict[str, int]) -> None:
        self.ok("one.image.lock", img["ready"], 1, False)
        for key, state in (("ready", "READY, locked, used by a VM"),
                           ("persistent", "persistent, used by a VM"),
                           ("error", "ERROR (no /sbin/init)")):
            self.take("one.image.info", img[key], False, state=f"image {state}")
        self.take("one.imagepool.info", -2, -1, -1, state="every image")
        self.take("one.datastore.info", img["ds"], False, state="image datastore with images")

    def identity_documents(self) -> None:
        name = self.name("user")
        uid = self.ok("one.user.allocate", name, PASSWORD, "", [])
        self.user_session = f"{name}:{PASSWORD}"
        gid = self.ok("one.group.allocate", self.name("group"))
        self.ok("one.user.addgroup", uid, gid)
        self.ok("one.user.update", uid, 'A="1"\nB=[C="2",D="<3>"]\n', 0)
        self.ok("one.user.login", name, "", 600, -1)
        self.ok("one.user.login", name, "", -1, gid)
        for oid, state in ((uid, "with a template, two groups and two login tokens"),
                           (0, "oneadmin"), (1, "serveradmin")):
            self.take("one.user.info", oid, False, state=f"user {state}")
        self.take("one.user.info", -1, False, state="the caller, a plain user",
                  session=self.user_session)
        self.take("one.userpool.info", state="as oneadmin")
        self.take("one.userpool.info", state="as a plain user", session=self.user_session)
        for oid, state in ((gid, "a new group with a user"), (0, "oneadmin"), (1, "users")):
            self.take("one.group.info", oid, False, state=f"group {state}")
        self.take("one.grouppool.info", state="as oneadmin")
        self.take("one.grouppool.info", state="as a plain user", session=self.user_session)
        # "#uid CLUSTER/* USE #0", in the hexadecimal form the call takes.
        self.ok("one.acl.addrule", f"{0x100000000 | uid:X}", "200400000000", "1", "100000000")
        self.take("one.acl.info", state="the default rules and one more")
        mine = self.vm("users-vm", session=self.user_session)
        assert type(mine) is int
        for params, state in (((-1, -1, -1, -1), "what a plain user may see"),
                              ((-3, -1, -1, -1), "a plain user's own")):
            self.take("one.vmpool.info", *params, state=state, session=self.user_session)
        self.take("one.vmpool.accounting", -1, -1, -1, state="a plain user's",
                  session=self.user_session)

    def infrastructure_documents(self, h: dict[str, int]) -> None:
        cid = self.ok("one.cluster.allocate", self.name("cluster"))
        self.ok("one.cluster.addhost", cid, h["b"])
        sys_ds = self.ok("one.datastore.allocate",
                         f'NAME="{self.name("sysds")}"\nTYPE="SYSTEM_DS"\nTM_MAD="ssh"\n', cid)
        self.ok("one.datastore.enable", sys_ds, False)
        self.ok("one.cluster.update", cid, 'RESERVED_CPU="10"\nNOTE="n"\n', 1)
        for oid, state in ((cid, "new, with a host and a datastore"), (0, "default")):
            self.take("one.cluster.info", oid, False, state=f"cluster {state}")
        self.take("one.clusterpool.info", state="every cluster")
        for oid, state in ((0, "system"), (1, "default"), (2, "files"),
                           (sys_ds, "a disabled system datastore")):
            self.take("one.datastore.info", oid, False, state=f"datastore {state}")
        self.take("one.datastorepool.info", state="every datastore")

    def template_documents(self) -> None:
        plain = self.ok("one.template.allocate",
                        VM.format(name=self.name("tmpl")) + 'DISK=[SIZE=10,TYPE=fs]\n'
                        'NIC=[IP="10.0.0.1"]\nLABELS="a"\n')
        xml_form = self.ok("one.template.allocate",
                           f"<TEMPLATE><NAME>{self.name('xmltmpl')}</NAME><CPU>1</CPU>"
                           "<MEMORY>64</MEMORY><CONTEXT><NETWORK><![CDATA[YES]]></NETWORK>"
                           "</CONTEXT></TEMPLATE>")
        self.ok("one.template.lock", xml_form, 2, False)
        for oid, state in ((plain, "text form, disk and NIC"),
                           (xml_form, "XML form, locked")):
            self.take("one.template.info", oid, False, False, state=f"template {state}")
        self.take("one.templatepool.info", -2, -1, -1, state="every template")
        self.take("one.templatepool.info", -1, -1, -1, state="as a plain user",
                  session=self.user_session)

    def system_documents(self) -> None:
        self.take("one.system.config", state="as oneadmin")
        self.take("one.system.config", state="as a plain user: DB hidden",
                  session=self.user_session)
        self.take("one.zone.raftstatus", state="a server outside any HA setup")
        self.tenancy_documents()

    def tenancy_documents(self) -> None:
        self.take("one.zone.info", 0, False, state="zone 0 as the first start made it")
        self.ok("one.zone.addserver", 0, 'SERVER=[NAME="s1",ENDPOINT="http://s1:2633/RPC2"]')
        self.take("one.zone.info", 0, False, state="zone 0 with a server")
        self.take("one.zonepool.info", state="zone 0 with a server")
        self.ok("one.zone.delserver", 0, 0)
        self.take("one.vdc.info", 0, False, state="the default VDC")
        vdc = self.ok("one.vdc.allocate", f'NAME="{self.name("vdc")}"\nDESCRIPTION="a <b>"')
        gid = self.ok("one.group.allocate", self.name("vdcg"))
        self.ok("one.vdc.addgroup", vdc, gid)
        self.ok("one.vdc.addcluster", vdc, 0, 0)
        self.ok("one.vdc.addhost", vdc, 0, -10)
        self.ok("one.vdc.adddatastore", vdc, 0, 1)
        self.take("one.vdc.info", vdc, False, state="a VDC with a group and resources")
        self.take("one.vdcpool.info", state="the default VDC and a full one")

    def network_documents(self) -> None:
        """Networks of every AR type, with leases of VMs, a hold and a reservation, a
        locked one, and security groups with and without VMs."""
        sg = self.ok("one.secgroup.allocate", f'NAME="{self.name("sg")}"\nRULE=[PROTOCOL="TCP",'
                     'RULE_TYPE="inbound",RANGE="22,80:90"]\nDESCRIPTION="a <b> & c"')
        net = self.ok("one.vn.allocate", f'NAME="{self.name("net")}"\nVN_MAD="dummy"\n'
                      'BRIDGE="br-doc"\nGATEWAY="10.213.9.1"\nDNS="10.213.0.2"\n'
                      'AR=[TYPE="IP4",IP="10.213.9.10",SIZE="8"]\n'
                      'AR=[TYPE="IP6",GLOBAL_PREFIX="2001:db8::",ULA_PREFIX="fd00::",SIZE="4"]\n'
                      'AR=[TYPE="IP6_STATIC",IP6="2001:db8:1::10",PREFIX_LENGTH="64",SIZE="4"]\n'
                      'AR=[TYPE="IP4_6",IP="10.213.9.100",GLOBAL_PREFIX="2001:db8:2::",'
                      'SIZE="4"]\nAR=[TYPE="ETHER",SIZE="4"]', -1)
        self.take("one.vn.info", net, False, state="a network with every AR type, no lease")
        self.vm("nic", f'NIC=[NETWORK_ID="{net}",SECURITY_GROUPS="{sg}"]\n'
                f'NIC_ALIAS=[NETWORK_ID="{net}",PARENT="NIC0"]')
        self.ok("one.vn.hold", net, 'LEASES=[IP="10.213.9.17"]')
        self.ok("one.vn.reserve", net, f'SIZE=2\nNAME="{self.name("rsv")}"')
        self.take("one.vn.info", net, False, state="leases of a VM, a hold and a reservation")
        self.ok("one.vn.lock", net, 1, False)
        self.take("one.vn.info", net, False, state="a locked network")
        self.take("one.vnpool.info", -2, -1, -1, state="every network")
        self.take("one.vnpool.info", -1, -1, -1, state="as a plain user",
                  session=self.user_session)
        self.take("one.secgroup.info", 0, False, state="the default group, used by a VM")
        self.take("one.secgroup.info", sg, False, state="a group with a rule and a VM")
        self.take("one.secgrouppool.info", -2, -1, -1, state="every group")
        vt = self.ok("one.vntemplate.allocate", f'NAME="{self.name("vnt")}"\nVN_MAD="dummy"\n'
                     'BRIDGE="br-t"\nAR=[TYPE="IP4",IP="10.213.8.1",SIZE="2"]')
        self.take("one.vntemplate.info", vt, False, state="a network template")
        self.ok("one.vntemplate.instantiate", vt, self.name("from-t"), "")
        self.ok("one.vntemplate.lock", vt, 1, False)
        self.take("one.vntemplate.info", vt, False, state="a locked network template")
        self.take("one.vntemplatepool.info", -2, -1, -1, state="every network template")
        self.take("one.vnpool.info", -2, -1, -1, state="with a network from a template")
