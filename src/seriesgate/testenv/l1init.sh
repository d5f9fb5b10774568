#!/bin/sh
# /init of the L1 test VM (busybox-static): mount the host's / read-only over virtio-9p,
# overlay tmpfs on the writable places, mount the results directory read-write at its host
# path, chroot and run seriesgate.testenv.inside; print its exit status; power off.
/bin/busybox --install -s /bin 2>/dev/null
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
  echo "sg-l1: FAILED: $*"
  echo "SGL1-EXIT ${nonce:-none} 125"
  poweroff -f
}

for word in $(cat /proc/cmdline); do
  case "$word" in sgl1=*) echo "${word#sgl1=}" | base64 -d > /sg.conf ;; esac
done
[ -s /sg.conf ] || fail "no sgl1= parameter on the kernel command line"
{ read -r nonce; read -r results; read -r python; read -r spec; read -r use_va; } < /sg.conf

# The parameters the kernel command line gives module $1 ("kvm_amd.npt=0" gives "npt=0"),
# as modprobe would pass them: busybox insmod does not read /proc/cmdline.
cmdline_params() {
  for word in $(cat /proc/cmdline); do
    case "$word" in "$1".*=*) printf '%s ' "${word#"$1".}" ;; esac
  done
}

# insmod unless loaded already (modules shared by several lists, e.g. irqbypass)
load() {
  [ -d "/sys/module/${1%.ko}" ] && return 0
  insmod "/lib/modules/$1" $2 $(cmdline_params "${1%.ko}")
}

while read -r ko; do
  load "$ko" || fail "insmod $ko"
done < /lib/modules/load-order

# The test device: vhost_vdpa, vdpa_sim (use_va from the run spec), vdpa_sim_net.
while read -r ko; do
  case "$ko" in
    vdpa_sim.ko) err=$(load "$ko" "use_va=${use_va:-0}" 2>&1) ;;
    *) err=$(load "$ko" 2>&1) ;;
  esac || fail "modules refused: insmod $ko: $err"
done < /lib/modules/vdpa-order
# KVM for L2, in the background: kvm_amd where the CPU offers svm (TCG's -cpu max, or KVM
# -cpu host on AMD), kvm_intel where it offers vmx (KVM -cpu host on Intel with nesting).
# The command's setup waits for /dev/kvm only when it needs it.
kvm_order=
if grep -qw svm /proc/cpuinfo; then kvm_order=/lib/modules/kvm-amd-order
elif grep -qw vmx /proc/cpuinfo; then kvm_order=/lib/modules/kvm-intel-order
fi
if [ -n "$kvm_order" ]; then
  (while read -r ko; do
     err=$(load "$ko" 2>&1) || { echo "sg-l1: kvm: insmod $ko: $err"; break; }
   done < "$kvm_order") &
fi

r=/newroot
mkdir -p $r /ov
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts,ro,cache=loose" hostroot $r || fail "mount host root over 9p"
mount -t tmpfs -o size=70% tmpfs /ov
for d in tmp var root; do
  [ -d "$r/$d" ] || continue
  mkdir -p "/ov/$d/upper" "/ov/$d/work"
  mount -t overlay overlay -o "lowerdir=$r/$d,upperdir=/ov/$d/upper,workdir=/ov/$d/work" "$r/$d" \
    || fail "overlay on /$d"
done
chmod 1777 /ov/tmp/upper 2>/dev/null
mount -t tmpfs tmpfs $r/run
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm 2>/dev/null
mount -t devpts devpts $r/dev/pts
mount -t tmpfs tmpfs $r/dev/shm
mount -t 9p -o "$opts,cache=none" results "$r$results" || fail "mount results dir $results"
mount -t tracefs tracefs $r/sys/kernel/tracing 2>/dev/null
# A heartbeat for the host (vm.L1_BEAT_TIMEOUT): L1's uptime, rewritten every 10 s. An L1
# that hangs stops it; a test that hangs in a live L1 does not (Avocado's timeouts do that).
(while :; do cut -d' ' -f1 /proc/uptime > "$r$results/l1-heartbeat"; sleep 10; done) &
beat=$!
if [ -n "$kvm_order" ]; then
  # Where the KVM modules lie (KASLR): the RIP of an L1 that dies in them is named with it
  # (vm.L1_REGISTERS, l1monitor.symbolize).
  (n=0
   until grep -qE '^kvm_(amd|intel) .* Live ' /proc/modules || [ $n -ge 300 ]; do
     sleep 0.1; n=$((n + 1))
   done
   grep -E '\[kvm(_amd|_intel)?\]$' /proc/kallsyms > "$r$results/l1-kvm-symbols.txt") &
fi

echo "SGL1-START $nonce $(cut -d' ' -f1 /proc/uptime)"
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  PYTHONDONTWRITEBYTECODE=1 chroot $r "$python" -m seriesgate.testenv.inside "$spec"
st=$?
kill $beat 2>/dev/null
sync
umount "$r$results" 2>/dev/null
echo "SGL1-EXIT $nonce $st"
poweroff -f
