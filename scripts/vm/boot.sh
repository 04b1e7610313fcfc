#!/usr/bin/env bash
# Boot one of scripts/vm/kernels.sh's kernels under qemu (TCG) and run COMMAND inside, chrooted into
# this machine's root (shared read-only over 9p). OUTDIR is shared writable, at its own path in the chroot
#   usage: boot.sh NAME OUTDIR [TIMEOUT_SECS] -- COMMAND...
# Leaves in OUTDIR: console.log (kernel console + COMMAND's output), rc (COMMAND's status),
# output.log (COMMAND's stdout+stderr), vm-info (release=, btf=yes|no, boot_secs= and
# command_end_secs= in guest uptime), .vm/ (the command as the VM ran it, qemu's stderr).
# Exit: COMMAND's status; 124 the timeout killed qemu; 125 the VM did not run COMMAND to its end.
# COMMAND runs as root with a clean environment (PATH, HOME=/tmp, LANG=C.UTF-8): pass variables
# as `env NAME=VALUE cmd...`. Writable in the chroot: tmpfs on /tmp /run /var/tmp /var/lib/nginx
# /var/log/nginx, /dev/shm, OUTDIR; the rest of / is the host's, read-only.
# Environment: KERNEL_CACHE (see kernels.sh), VM_MEM (4G), VM_SMP (2), VM_CPU (max),
# VM_TCG_THREAD (single: with multi, a 6.1 guest once wedged in a soft lockup when the collector
# detached its tracepoints: a stale translated int3 at a patched static key), VM_APPEND (extra
# kernel cmdline; mitigations=off is the default, ~1.5x faster syscalls under TCG).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${KERNEL_CACHE:-/var/cache/collector-kernels}
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p"

usage() { echo "usage: $0 NAME OUTDIR [TIMEOUT_SECS] -- COMMAND..." >&2; exit 2; }
die() { echo "boot.sh: $*" >&2; exit 125; }

[ "$#" -ge 4 ] || usage
NAME=$1 OUTARG=$2; shift 2
TIMEOUT=600
if [ "$1" != "--" ]; then TIMEOUT=$1; shift; fi
[ "${1:-}" = "--" ] || usage
shift
[ "$#" -ge 1 ] || usage
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || usage

for tool in qemu-system-x86_64 cpio; do
    command -v "$tool" >/dev/null || die "$tool missing: run scripts/deps.sh"
done
[ -x /bin/busybox ] || die "/bin/busybox missing (busybox-static): run scripts/deps.sh"

"$here/kernels.sh" fetch "$NAME" >/dev/null
KDIR="$CACHE/$NAME"
VMLINUZ=$("$here/kernels.sh" path "$NAME")
RELEASE=$("$here/kernels.sh" release "$NAME")
MODDIR="$KDIR/lib/modules/$RELEASE"

mkdir -p "$OUTARG"
OUTDIR=$(cd "$OUTARG" && pwd)
case "$OUTDIR" in *$'\n'*|*' '*) die "OUTDIR must not contain spaces or newlines: $OUTDIR" ;; esac
rm -f "$OUTDIR/rc" "$OUTDIR/console.log" "$OUTDIR/output.log" "$OUTDIR/vm-info"
mkdir -p "$OUTDIR/.vm"

# The command, quoted for bash; run inside the chroot by /bin/bash.
{
    echo "# written by boot.sh; run inside the VM, chrooted into the host root"
    printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$OUTDIR/.vm/cmd"
printf '%s\n' "$OUTDIR" > "$OUTDIR/.vm/hostpath"

# ---------------------------------------------------------------- initramfs (cached per kernel)
module_file() {   # the module's file in the kernel package, or nothing
    find "$MODDIR" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" -o -name "$1.ko.gz" | head -n1
}
module_cat() {    # the module, decompressed
    case "$1" in
        *.xz) xz -dc "$1" ;; *.zst) zstd -qdc "$1" ;; *.gz) gzip -dc "$1" ;; *) cat "$1" ;;
    esac
}
builtin_mod() { grep -qE "/$1\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; }

ORDER=() ; NOTES=()
add_module() {   # add $1 after its dependencies (from the module's own depends= field)
    local m=$1 f dep
    for x in "${ORDER[@]:-}"; do [ "$x" = "$m" ] && return 0; done
    f=$(module_file "$m")
    if [ -z "$f" ]; then
        if builtin_mod "$m"; then NOTES+=("$m: built in"); else NOTES+=("$m: absent"); fi
        return 0
    fi
    for dep in $(module_cat "$f" | grep -a -o 'depends=[A-Za-z0-9_,-]*' | head -n1 | sed 's/^depends=//; s/,/ /g'); do
        add_module "$(echo "$dep" | tr - _)"
    done
    ORDER+=("$m")
}
for m in $MODULES; do add_module "$m"; done

INIT_TEXT=$(cat <<'EOF'
#!/bin/busybox sh
# init of boot.sh's initramfs: modules, 9p root of the host, chroot, COMMAND, poweroff
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
log() { echo "vm-init: $*" > /dev/console; }
bail() { log "$*"; sync; poweroff -f; sleep 5; }
for m in $(cat /modules/order); do
    insmod "/modules/$m.ko" || log "insmod $m failed"
done
log "modules: $(cat /modules/order | tr '\n' ' ')"
[ -s /modules/notes ] && log "not loaded: $(cat /modules/notes | tr '\n' ';')"
O9P="trans=virtio,version=9p2000.L,msize=512000"
mkdir -p /host /outshare
mount -t 9p -o "$O9P,ro,cache=loose" hostroot /host || bail "cannot mount hostroot over 9p"
mount -t 9p -o "$O9P,cache=none" outdir /outshare || bail "cannot mount outdir over 9p"
hostpath=$(cat /outshare/.vm/hostpath)
H=/host
mount -t proc proc $H/proc
mount -t sysfs sysfs $H/sys
mount -t devtmpfs devtmpfs $H/dev
mkdir -p $H/dev/pts $H/dev/shm 2>/dev/null
mount -t devpts devpts $H/dev/pts
mount -t tmpfs tmpfs $H/dev/shm
mount -t tracefs tracefs $H/sys/kernel/tracing || log "no tracefs"
mount -t debugfs debugfs $H/sys/kernel/debug 2>/dev/null
mount -t bpf bpffs $H/sys/fs/bpf || log "no bpffs"
mount -t cgroup2 cgroup2 $H/sys/fs/cgroup 2>/dev/null
# writable places on the read-only root: the command's temp files, nginx's state and logs
for d in /tmp /run /var/tmp /var/lib/nginx /var/log/nginx /var/cache/nginx; do
    [ -d "$H$d" ] && mount -t tmpfs -o mode=1777 tmpfs "$H$d"
done
# OUTDIR at its own path (on a tmpfs above, or an existing directory of the host root)
[ -d "$H$hostpath" ] || mkdir -p "$H$hostpath" 2>/dev/null
mount --bind /outshare "$H$hostpath" || log "cannot mount OUTDIR at $hostpath"
ip link set lo up || ifconfig lo 127.0.0.1 up
[ -e $H/sys/kernel/btf/vmlinux ] && log "btf: yes" || log "btf: NO /sys/kernel/btf/vmlinux"
log "up after $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r); running the command"
{ echo "release=$(uname -r)"; echo "btf=$([ -e $H/sys/kernel/btf/vmlinux ] && echo yes || echo no)"
  echo "boot_secs=$(cut -d' ' -f1 /proc/uptime)"; } > /outshare/vm-info
set -o pipefail
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TERM=dumb \
    LANG=C.UTF-8 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 \
    chroot $H /bin/bash "$hostpath/.vm/cmd" 2>&1 </dev/null | tee /outshare/output.log
rc=$?
echo "command_end_secs=$(cut -d' ' -f1 /proc/uptime)" >> /outshare/vm-info
echo $rc > /outshare/rc
log "command exited $rc after $(cut -d' ' -f1 /proc/uptime) s"
sync
umount "$H$hostpath" 2>/dev/null
poweroff -f
EOF
)

INITKEY=$( { echo "$INIT_TEXT"; printf '%s\n' "${ORDER[@]:-}"; sha256sum /bin/busybox; } | sha256sum | cut -c1-16)
INITRD="$KDIR/initramfs-$INITKEY.cpio"
if [ ! -e "$INITRD" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp"/{bin,dev,proc,sys,modules,host,outshare}
    cp /bin/busybox "$tmp/bin/busybox"
    echo "$INIT_TEXT" > "$tmp/init"; chmod +x "$tmp/init"
    : > "$tmp/modules/order"
    for m in "${ORDER[@]:-}"; do
        [ -n "$m" ] || continue
        module_cat "$(module_file "$m")" > "$tmp/modules/$m.ko"
        echo "$m" >> "$tmp/modules/order"
    done
    printf '%s\n' "${NOTES[@]:-}" | sed '/^$/d' > "$tmp/modules/notes"
    (cd "$tmp" && find . | cpio -o -H newc --quiet) > "$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    rm -rf "$tmp"; trap - EXIT
fi


# ---------------------------------------------------------------- qemu
APPEND="console=ttyS0 panic=-1 rdinit=/init mitigations=off ${VM_APPEND:-}"
echo "boot.sh: $NAME ($RELEASE), timeout ${TIMEOUT}s, console in $OUTDIR/console.log" >&2
start=$(date +%s.%N)
set +e
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -accel "tcg,thread=${VM_TCG_THREAD:-single}" -cpu "${VM_CPU:-max}" -m "${VM_MEM:-4G}" -smp "${VM_SMP:-2}" \
    -nographic -no-reboot -nic none \
    -kernel "$VMLINUZ" -initrd "$INITRD" -append "$APPEND" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$OUTDIR,mount_tag=outdir,security_model=none,multidevs=remap" \
    </dev/null >"$OUTDIR/console.log" 2>"$OUTDIR/.vm/qemu.err" &
qpid=$!
# stopped from outside (a test's timeout): take qemu down with us
trap 'kill -TERM "$qpid" 2>/dev/null; wait "$qpid"; echo "boot.sh: stopped by a signal" >&2; exit 143' TERM INT HUP
wait "$qpid"
qrc=$?
trap - TERM INT HUP
set -e
secs=$(echo "$(date +%s.%N) - $start" | bc)
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
    echo "boot.sh: TIMEOUT: $NAME did not finish in ${TIMEOUT}s; qemu killed (see $OUTDIR/console.log)" >&2
    exit 124
fi
if [ "$qrc" -ne 0 ]; then
    echo "boot.sh: qemu exited $qrc: $(cat "$OUTDIR/.vm/qemu.err")" >&2
    exit 125
fi
if [ ! -s "$OUTDIR/rc" ]; then
    echo "boot.sh: the VM stopped without recording the command's status (see $OUTDIR/console.log)" >&2
    tail -n 20 "$OUTDIR/console.log" >&2
    exit 125
fi
rc=$(cat "$OUTDIR/rc")
printf 'boot.sh: %s: command exited %s, VM ran %.1fs\n' "$NAME" "$rc" "$secs" >&2
exit "$rc"
