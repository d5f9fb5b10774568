"""Which virtio status writes reach the vDPA device during a start (claim:status-bits).

RFC v2 01/10 ("vdpa: do not set virtio status bits if unneeded") makes QEMU skip status
writes that set no new bit. QEMU's own ``vhost_vdpa_add_status`` trace fires before that
early return, so this test watches the device side: a kprobe on vdpa_sim's
``vdpasim_set_status`` (and its reset callbacks) inside the test VM. Outside migration the
invariant must hold on both builds (01/10 is upstream in the baseline too).
"""

from __future__ import annotations

from seriesgate.functional.kprobe import DeviceStatusProbe, check_start, split_starts, status_name
from seriesgate.functional.test import VdpaTest


class StatusBits(VdpaTest):
    """Which virtio status writes reach the device during a start.

    :avocado: enable
    """

    def test_status_bits(self) -> None:
        """
        :avocado: tags=quick,vdpa,claim:status-bits,expect:holds-on-both
        """
        device = self.fresh_device(0)
        probe = DeviceStatusProbe()
        probe.install()
        try:
            guest = self.launch_guest(device)
            self.check_traffic(guest, count=10, label="traffic")
            events = [ev for ev in probe.read() if ev.comm.startswith("qemu")]
            (self.outdir / "device-status.trace").write_text(probe.raw())
        finally:
            probe.remove()
        qemu_writes = [
            ev.int("status") for ev in guest.machine.trace() if ev.name == "vhost_vdpa_add_status"
        ]
        starts = split_starts(events)
        self.measurements["device_events"] = [
            f"{ev.kind}:{status_name(ev.status)}" if ev.status is not None else ev.kind
            for ev in events
        ]
        self.measurements["device_starts"] = [[hex(v) for v in s] for s in starts]
        self.measurements["qemu_add_status"] = [hex(v) for v in qemu_writes]
        self.log.info(
            "status writes reaching the device, per start: %s", self.measurements["device_starts"]
        )
        self.assertTrue(
            starts, f"no status write reached the device: {self.measurements['device_events']}"
        )
        problems = []
        for n, writes in enumerate(starts, 1):
            result = check_start(writes)
            if result.redundant:
                problems.append(
                    f"start {n}: writes setting no new bit {[hex(v) for v in result.redundant]}"
                )
            if result.cleared_without_reset:
                problems.append(
                    f"start {n}: writes clearing bits without reset "
                    f"{[hex(v) for v in result.cleared_without_reset]}"
                )
            again = {k: c for k, c in result.bit_counts.items() if c > 1}
            if again:
                problems.append(f"start {n}: bits set more than once {again}")
        final = check_start(starts[-1])
        never = [k for k, c in final.bit_counts.items() if c == 0]
        if never:
            problems.append(
                f"the running start (after the last reset) wrote "
                f"{[status_name(v) for v in starts[-1]]} to the device: {never} never reached it"
            )
        self.measurements["problems"] = problems
        self.assertFalse(problems, "; ".join(problems))
