"""The guest changes its MAC through the control virtqueue; the device follows.

vdpa_sim_net filters received unicast frames by the MAC in its config space, so frames
to the new MAC only loop back when the CVQ command really reached the device.

The filter compares MACs with ``strncmp`` (vdpa_sim_net.c ``receive_filter``), which stops
at the first zero byte: for QEMU-style ``52:54:00:...`` addresses only the first two bytes
count. The new MAC therefore differs from the old one in its first byte and has no zero
byte, so both the positive (new MAC loops back) and the negative check (old MAC dropped)
mean something.
"""

from __future__ import annotations

from seriesgate.functional.test import VdpaTest, hex_mac

NEW_MAC = "02:11:22:33:44:55"  # locally administered, no zero byte


class CvqMac(VdpaTest):
    """A MAC set through the control virtqueue reaches the device, with and without SVQ.

    :avocado: enable
    """

    def _mac_change(self, svq: bool) -> None:
        device = self.fresh_device(0)
        guest = self.launch_guest(device, svq=svq)
        self.measurements["svq"] = svq
        before = hex_mac(str(self.env.config(device.name)["mac"]))
        self.assertEqual(before, hex_mac(device.mac), "device MAC before the change")
        guest.run(f"ip link set {guest.iface} address {NEW_MAC}")
        self.assertEqual(hex_mac(guest.mac()), NEW_MAC, "guest interface kept its old MAC")
        after = hex_mac(str(self.env.config(device.name)["mac"]))
        self.measurements.update(device_mac_before=before, device_mac_after=after)
        self.assertEqual(
            after, NEW_MAC, "`vdpa dev config show` does not show the MAC the guest set via CVQ"
        )
        self.check_traffic(guest, count=20, label="traffic_new_mac")
        # Control: frames to the old MAC are no longer delivered (the device filters).
        g0, d0 = guest.counters(), self.device_counters(device)
        guest.send_frames(10, dst_mac=device.mac)
        g1, d1 = guest.counters(), self.device_counters(device)
        self.measurements["old_mac_rx"] = g1["rx_packets"] - g0["rx_packets"]
        self.measurements["old_mac_dev_rx_drops"] = d1["rx_drops"] - d0["rx_drops"]
        self.assertGreaterEqual(g1["tx_packets"] - g0["tx_packets"], 10, "old-MAC frames not sent")
        self.assertEqual(
            g1["rx_packets"] - g0["rx_packets"], 0, "frames to the old MAC still loop back"
        )
        self.assertGreaterEqual(
            d1["rx_drops"] - d0["rx_drops"],
            10,
            "the device did not drop frames to the old MAC: its filter still has that MAC",
        )

    def test_cvq_mac(self) -> None:
        """
        :avocado: tags=slow,vdpa,cvq,expect:holds-on-both
        """
        self._mac_change(svq=False)

    def test_cvq_mac_svq(self) -> None:
        """
        :avocado: tags=slow,vdpa,cvq,svq,expect:holds-on-both
        """
        self._mac_change(svq=True)
