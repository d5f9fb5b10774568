"""Hot-unplug the vhost-vdpa NIC: no crash, all maps removed, device reusable."""

from __future__ import annotations

from seriesgate.functional.test import VdpaTest
from seriesgate.functional.trace import dma_maps, unmatched_maps


class Unplug(VdpaTest):
    """Hot-unplug of the vhost-vdpa NIC.

    :avocado: enable
    """

    def netdev_args(self, device, *, svq=False, netdev_id="vdpa0"):  # type: ignore[no-untyped-def]
        # A PCIe root port makes the NIC hot-unpluggable on q35.
        args = super().netdev_args(device, svq=svq, netdev_id=netdev_id)
        args[-1] += ",bus=rp0"
        return ["-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1", *args]

    def test_unplug(self) -> None:
        """
        :avocado: tags=slow,vdpa,expect:holds-on-both
        """
        device = self.fresh_device(0)
        guest = self.launch_guest(device)
        self.check_traffic(guest, count=10, label="traffic_before")
        vm = guest.machine
        since = len(vm.events)
        vm.qmp("device_del", id="nic0")
        vm.event_wait("DEVICE_DELETED", {"data": {"device": "nic0"}}, timeout=60, since=since)
        vm.qmp("netdev_del", id="vdpa0")
        status = vm.qmp("query-status")
        self.assertEqual(status["status"], "running", "VM not running after unplug")
        out = guest.run("ls /sys/class/net").output.split()
        self.assertNotIn(guest.iface, out, "guest still sees the unplugged NIC")
        vm.check_alive("after unplug")
        events = vm.trace()  # the log backend flushes every line
        maps = dma_maps(events)
        left = unmatched_maps(events)
        self.measurements.update(
            maps=len(maps),
            unmaps=sum(1 for ev in events if ev.name == "vhost_vdpa_dma_unmap"),
            still_mapped=[(m.asid, hex(m.iova), hex(m.size)) for m in left],
        )
        self.assertTrue(maps, "nothing was mapped in the first place")
        self.assertFalse(
            left, f"ranges never unmapped after unplug: {self.measurements['still_mapped']}"
        )
        vm.shutdown()
        self.assertIsNone(vm.crash, f"QEMU crashed on quit after unplug: {vm.crash}")
        self.assertEqual(vm.exitcode, 0, "QEMU did not quit cleanly after unplug")
        # The same device (not re-created) serves a new QEMU.
        guest2 = self.launch_guest(device, name="vm2")
        self.check_traffic(guest2, count=10, label="traffic_reuse")
