#!/bin/sh
# /init of the L2 guest initramfs (busybox-static): load virtio_net, bring eth0 up, then
# serve the seriesgate agent protocol (see seriesgate/testenv/agent.py) on the agent port.
# Console: ttyS0. Agent: the port named by sgagent= on the kernel command line (ttyS1).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run /sg
mount -t tmpfs tmpfs /run
# No IPv6 on the test NIC: no autoconf/DAD/router solicitations, so the NIC's counters
# move only with the traffic a test sends (tests compare them with the device's vstats).
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null
# Modules in dependency order (written by the asset builder).
while read -r ko; do
  insmod "/lib/modules/$ko" || echo "sg-l2: insmod $ko failed"
done < /lib/modules/load-order
ip link set lo up
ip link set eth0 up 2>/dev/null || echo "sg-l2: no eth0"
echo "sg-l2: up in $(cut -d' ' -f1 /proc/uptime) s"

port=ttyS1
for word in $(cat /proc/cmdline); do
  case "$word" in sgagent=*) port="${word#sgagent=}" ;; esac
done
tty="/dev/$port"

mkdir -p /root
export HOME=/root
while true; do
  sh /bin/sgagent.sh "$tty"
  echo "sg-l2: agent loop ended; restarting"
  sleep 1
done
