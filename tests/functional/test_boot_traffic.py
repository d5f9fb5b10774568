"""Boot an L2 guest on vhost-vdpa and check frames loop back through vdpa_sim_net."""

from __future__ import annotations

from seriesgate.functional.test import VdpaTest


class BootTraffic(VdpaTest):
    """Guest counters and the device's vstats grow together, with and without SVQ.

    :avocado: enable
    """

    def _boot_and_traffic(self, svq: bool) -> None:
        device = self.fresh_device(0)
        guest = self.launch_guest(device, svq=svq)
        self.measurements["svq"] = svq
        self.check_traffic(guest, count=20, label="traffic_1")
        # A second round: the counters keep growing (not a one-off at link up).
        self.check_traffic(guest, count=20, label="traffic_2")

    def test_traffic(self) -> None:
        """
        :avocado: tags=quick,vdpa,expect:holds-on-both
        """
        self._boot_and_traffic(svq=False)

    def test_traffic_svq(self) -> None:
        """
        :avocado: tags=slow,vdpa,svq,expect:holds-on-both
        """
        self._boot_and_traffic(svq=True)
