"""With x-svq=on, device memory is mapped at IOVAs from QEMU's iova tree (claim:svq-iova-tree).

Passthrough maps guest RAM at IOVA = GPA. Shadow virtqueues make QEMU allocate IOVAs from
its iova tree inside the device's iova range, and map the SVQ rings (QEMU's own memory)
too. The trace tells both: ``vhost_vdpa_listener_region_add`` gives each RAM section's GPA
and host address, ``vhost_vdpa_dma_map`` the IOVA it was mapped at.
"""

from __future__ import annotations

from seriesgate.functional.test import VdpaTest
from seriesgate.functional.trace import iova_layout


class SvqIovaTree(VdpaTest):
    """With x-svq=on, device memory is mapped at IOVAs from QEMU's iova tree.

    :avocado: enable
    """

    def test_svq_iova_tree(self) -> None:
        """
        :avocado: tags=core,vdpa,svq,claim:svq-iova-tree,expect:holds-on-both
        """
        device = self.fresh_device(0)
        guest = self.launch_guest(device, svq=True)
        self.check_traffic(guest, count=20, label="traffic")
        layout = iova_layout(guest.machine.trace())
        self.measurements.update(
            iova_first=hex(layout.first),
            iova_last=hex(layout.last),
            ram_maps=[(hex(gpa), hex(m.iova), hex(m.size)) for gpa, m in layout.ram],
            other_maps=[(hex(m.iova), hex(m.size), m.perm) for m in layout.other],
            ram_maps_not_at_gpa=len(layout.ram_not_at_gpa),
        )
        self.assertTrue(layout.ram, "no guest-RAM dma_map in the trace")
        self.assertTrue(
            layout.ram_not_at_gpa,
            "every guest-RAM map has IOVA == GPA: the iova tree is not in use",
        )
        # Two data queues, each with a driver and a device area mapped separately.
        self.assertGreaterEqual(
            len(layout.other), 4, f"SVQ rings not mapped: only {len(layout.other)} non-RAM maps"
        )
        self.assertFalse(
            layout.outside,
            f"maps outside the device iova range [{layout.first:#x}, {layout.last:#x}]: "
            f"{layout.outside}",
        )
        self.assertFalse(layout.overlaps, f"overlapping live IOVA ranges: {layout.overlaps}")
