"""The test's view of its environment: which vDPA devices exist and how to drive them.

Inside the command that ``run_in_env()`` starts (the Avocado job), ``$SERIESGATE_TESTENV``
names a JSON file written by the environment setup; ``VdpaEnvironment.from_env()`` reads it::

    env = VdpaEnvironment.from_env()
    dev = env.devices[0]                  # VdpaDevice(name="vdpa0", chardev=/dev/vhost-vdpa-0, ...)
    env.recreate(dev.name)                # fresh device between tests (same MAC)
    env.vstats(dev.name, 0)["received_desc"]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from seriesgate.errors import InfraError
from seriesgate.testenv import vdpa
from seriesgate.testenv.model import GuestImage, Mode, VdpaDevice

ENV_VAR = "SERIESGATE_TESTENV"


@dataclass
class VdpaEnvironment:
    """Devices, L2 guest image and KVM availability, as set up for this command."""

    mode: Mode
    kernel_version: str
    devices: list[VdpaDevice]
    l2_guest: GuestImage
    l2_kvm: bool  # /dev/kvm usable for the L2 QEMU (else TCG)
    l2_kvm_reason: str = ""  # why not, when l2_kvm is False
    notes: list[str] = field(default_factory=list)  # e.g. the test device's queue-max patch

    # -- serialisation -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": str(self.mode),
            "kernel_version": self.kernel_version,
            "devices": [d.to_json() for d in self.devices],
            "l2_guest": self.l2_guest.to_json(),
            "l2_kvm": self.l2_kvm,
            "l2_kvm_reason": self.l2_kvm_reason,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VdpaEnvironment:
        return cls(
            mode=Mode(data["mode"]),
            kernel_version=str(data["kernel_version"]),
            devices=[VdpaDevice.from_json(d) for d in data["devices"]],
            l2_guest=GuestImage.from_json(data["l2_guest"]),
            l2_kvm=bool(data["l2_kvm"]),
            l2_kvm_reason=str(data.get("l2_kvm_reason", "")),
            notes=[str(n) for n in data.get("notes", [])],
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_file(cls, path: Path) -> VdpaEnvironment:
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise InfraError(f"unreadable test environment description {path}: {exc}") from None

    @classmethod
    def from_env(cls) -> VdpaEnvironment:
        """The environment of the running command (``$SERIESGATE_TESTENV``)."""
        value = os.environ.get(ENV_VAR)
        if not value:
            raise InfraError(
                f"${ENV_VAR} is not set: not running inside a seriesgate test environment",
                hint="run the command with `seriesgate testenv -- CMD`",
            )
        return cls.from_file(Path(value))

    # -- devices ----------------------------------------------------------------------------

    def device(self, name: str) -> VdpaDevice:
        for dev in self.devices:
            if dev.name == name:
                return dev
        raise InfraError(f"no vDPA device {name} in this environment")

    def show(self) -> dict[str, dict[str, Any]]:
        """``vdpa -j dev show``: {name: attributes} of every vDPA device now present."""
        return vdpa.parse_dev_show(vdpa.run_vdpa("dev", "show"))

    def config(self, name: str) -> dict[str, Any]:
        """``vdpa -j dev config show NAME``: mac, link, mtu, negotiated features."""
        return vdpa.parse_config_show(vdpa.run_vdpa("dev", "config", "show", name), name)

    def vstats(self, name: str, qidx: int) -> dict[str, Any]:
        """``vdpa -j dev vstats show NAME qidx N``: the queue's counters (needs a driver)."""
        text = vdpa.run_vdpa("dev", "vstats", "show", name, "qidx", str(qidx))
        return vdpa.parse_vstats(text, name)

    def counters(self, name: str) -> dict[str, int]:
        """The device's datapath counters: rx_packets/rx_bytes/rx_drops/... (queue 0) and
        tx_packets/tx_bytes/tx_drops/... (queue 1), from vdpa_sim_net's vstats. Counts since
        the device was created: compare deltas."""
        return vdpa.datapath_counters(self.vstats(name, 0), self.vstats(name, 1))

    def recreate(self, name: str, mac: str | None = None) -> VdpaDevice:
        """Delete and re-add device ``name`` (its QEMU must have quit); optionally a new MAC."""
        old = self.device(name)
        new_mac = mac or old.mac
        vdpa.dev_del(name)
        vdpa.dev_add(name, new_mac, old.mgmtdev)
        attrs = self.show().get(name)
        if attrs is None:
            raise InfraError(f"vDPA device {name} did not come back after `vdpa dev add`")
        new = replace(
            old,
            mac=new_mac,
            chardev=vdpa.chardev_of(name),
            max_vqs=int(attrs.get("max_vqs", old.max_vqs)),
        )
        self.devices = [new if d.name == name else d for d in self.devices]
        return new

    def set_mac(self, name: str, mac: str) -> VdpaDevice:
        """Give device ``name`` a new MAC (re-creates it: no QEMU may be using it)."""
        return self.recreate(name, mac)
