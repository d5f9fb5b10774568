"""With x-svq=on, device memory is mapped at IOVAs from QEMU's iova tree (claim:svq-iova-tree).

Passthrough maps guest RAM at IOVA = GPA. Shadow virtqueues make QEMU allocate IOVAs from
its iova tree inside the device's iova range, and map the SVQ rings (QEMU's own memory)
too. The trace tells both: ``vhost_vdpa_listener_region_add`` gives each RAM section's GPA
and host address, ``vhost_vdpa_dma_map`` the IOVA it was mapped at.
"""

from __future__ import annotations

from seriesgate.functional.test import VdpaTest
from seriesgate.functional.trace import dma_maps, overlapping_maps, select


class SvqIovaTree(VdpaTest):
    def test_svq_iova_tree(self) -> None:
        """
        :avocado: tags=vdpa,svq,claim:svq-iova-tree,expect:holds-on-both
        """
        device = self.fresh_device(0)
        guest = self.launch_guest(device, svq=True)
        self.check_traffic(guest, count=20, label="traffic")
        events = guest.machine.trace()
        ranges = select(events, "vhost_vdpa_get_iova_range")
        self.assertTrue(ranges, "no vhost_vdpa_get_iova_range in the trace")
        first, last = ranges[-1].int("first"), ranges[-1].int("last")
        regions = select(events, "vhost_vdpa_listener_region_add")
        gpa_of = {ev.int("vaddr"): ev.int("iova") for ev in regions}
        maps = dma_maps(events)
        ram = [m for m in maps if m.uaddr in gpa_of]
        other = [m for m in maps if m.uaddr not in gpa_of]
        moved = [m for m in ram if m.iova != gpa_of[m.uaddr]]
        outside = [m for m in maps if m.iova < first or m.last > last]
        overlaps = [
            (hex(o.iova), hex(o.size), hex(n.iova), hex(n.size))
            for o, n in overlapping_maps(events)
        ]
        self.measurements.update(
            iova_first=hex(first),
            iova_last=hex(last),
            ram_maps=[(hex(gpa_of[m.uaddr]), hex(m.iova), hex(m.size)) for m in ram],
            other_maps=[(hex(m.iova), hex(m.size), m.perm) for m in other],
            ram_maps_moved=len(moved),
        )
        self.assertTrue(
            ram, f"no guest-RAM dma_map in the trace ({len(maps)} maps, {len(regions)} regions)"
        )
        self.assertTrue(moved, "every guest-RAM map has IOVA == GPA: the iova tree is not in use")
        self.assertGreaterEqual(
            len(other), 4, f"SVQ rings not mapped: only {len(other)} non-RAM maps"
        )
        self.assertFalse(
            outside, f"maps outside the device iova range [{first:#x}, {last:#x}]: {outside}"
        )
        self.assertFalse(overlaps, f"overlapping IOVA allocations: {overlaps}")
