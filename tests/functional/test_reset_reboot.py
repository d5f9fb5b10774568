"""Guest reboots reset and restart the vDPA device; memory is re-mapped and traffic flows."""

from __future__ import annotations

import time

from seriesgate.functional.test import VdpaTest
from seriesgate.functional.trace import ram_bytes_mapped_per_start, select
from seriesgate.testenv.agent import AgentError

REBOOTS = 2


class ResetReboot(VdpaTest):
    """Guest reboots reset and restart the device; traffic flows after each.

    :avocado: enable
    """

    def test_reboot_twice(self) -> None:
        """
        :avocado: tags=slow,vdpa,expect:holds-on-both
        """
        device = self.fresh_device(0)
        # The L2 arguments say -no-reboot; a guest reboot must reset the machine here.
        guest = self.launch_guest(device, extra_args=["-action", "reboot=reset"])
        self.check_traffic(guest, count=10, label="traffic_boot")
        for n in range(1, REBOOTS + 1):
            boot_id = guest.run("cat /proc/sys/kernel/random/boot_id").output.strip()
            # A guest reboot emits more than one RESET: a QMP round trip first collects
            # the previous reboot's events, so `since` only counts new ones.
            guest.machine.qmp("query-status")
            since = len(guest.machine.events)
            start = time.monotonic()
            guest.run("(sleep 0.2; reboot -f) >/dev/null 2>&1 &", timeout=10)
            guest.machine.event_wait("RESET", {"data": {"guest": True}}, timeout=60, since=since)
            # The agent may answer once more before the reset lands: wait for a new boot.
            deadline = time.monotonic() + self.boot_timeout
            while True:
                guest.machine.check_alive(f"during reboot {n}")
                try:
                    guest.agent.wait_ready(max(1.0, deadline - time.monotonic()))
                    now = guest.agent.run("cat /proc/sys/kernel/random/boot_id", 10).output
                except AgentError:
                    now = boot_id  # rebooting right now: ask again
                if now.strip() != boot_id:
                    break
                self.assertLess(time.monotonic(), deadline, f"reboot {n}: the guest never rebooted")
                time.sleep(0.5)
            self.measurements[f"reboot_{n}_s"] = round(time.monotonic() - start, 2)
            guest.find_iface()
            guest.link_up()
            self.check_traffic(guest, count=10, label=f"traffic_reboot_{n}")
        events = guest.machine.trace()
        starts = ram_bytes_mapped_per_start(events)
        self.measurements["ram_bytes_mapped_per_start"] = starts
        self.measurements["dev_start_events"] = [
            ev.fields.get("started") for ev in select(events, "vhost_vdpa_dev_start")
        ]
        self.assertGreaterEqual(len(starts), REBOOTS + 1, f"device started {len(starts)} times")
        first = starts[0]
        self.assertGreater(first, 0, "no guest RAM mapped at the first start")
        for n, total in enumerate(starts[-REBOOTS:], 1):
            self.assertGreaterEqual(
                total, first, f"restart {n}: only {total:#x} bytes of guest RAM re-mapped"
            )
