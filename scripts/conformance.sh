#!/usr/bin/env bash
# scripts/conformance.sh FS [OUTDIR]      FS = tmpfs | ext2
#
# pjdfstest side by side on this machine: the kernel's own driver and the
# rumpfs server for FS, same config (../shared/conformance/configs/
# posix-1s.toml unless PJD_CONFIG is set), fresh file systems of the same
# kind (ext2: mke2fs -t ext2 -b 4096 images of 512 MiB; kernel loop mount vs
# rump_ext2fs). Fails (exit 1) if any case that passes on the kernel does not
# pass on rumpfs. For ext2, both images must also be clean for e2fsck -fn
# afterwards.
#
# Needs root, /dev/fuse, pjdfstest (cargo install pjdfstest), e2fsprogs and
# the release binaries (cargo build --release). Every mount it makes is undone
# on exit.
set -u
fs=${1:?usage: conformance.sh tmpfs|ext2 [OUTDIR]}
top=$(cd "$(dirname "$0")/.." && pwd)
conf=${CONFORMANCE_DIR:-$top/../shared/conformance}
cfg=${PJD_CONFIG:-$conf/configs/posix-1s.toml}
out=${2:-$top/target/conformance/$fs}
rel=$top/target/release
[ -d "$conf" ] || { echo "conformance: no harness at $conf" >&2; exit 2; }
case $fs in
    tmpfs) server=$rel/rump_tmpfs ;;
    ext2) server=$rel/rump_ext2fs ;;
    *) echo "conformance: unknown file system $fs (tmpfs, ext2)" >&2; exit 2 ;;
esac
[ -x "$server" ] || { echo "conformance: $server not built (cargo build --release)" >&2; exit 2; }

work=$(mktemp -d /var/tmp/rumpfs-conf.XXXXXX)
chmod 755 "$work"   # the dummy users of pjdfstest must reach the mounts
# Both mount points have paths of the same length: pjdfstest's
# *_enametoolong_path cases depend on it.
kmnt=$work/kmnt rmnt=$work/rmnt
mkdir -p "$kmnt" "$rmnt" "$out"
server_pid=
cleanup() {
    for m in "$kmnt" "$rmnt"; do
        if mountpoint -q "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
    done
    [ -n "$server_pid" ] && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# Start the rumpfs server in the foreground (as a child we can wait for).
start_rump() { # ARGS...
    "$server" -f "$@" "$rmnt" 2>"$out/server.log" &
    server_pid=$!
    for _ in $(seq 1 200); do mountpoint -q "$rmnt" && return 0; kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
    echo "conformance: $server did not mount; its log:" >&2; cat "$out/server.log" >&2; exit 1
}
stop_rump() {
    umount "$rmnt"
    wait "$server_pid"; rc=$?; server_pid=
    [ "$rc" = 0 ] || { echo "conformance: server exited with $rc" >&2; exit 1; }
}
fsck_ok() { # IMG LABEL
    if ! e2fsck -fn "$1" > "$out/e2fsck-$2.log" 2>&1; then
        echo "conformance: e2fsck -fn after pjdfstest on $2 is not clean:" >&2
        tail -20 "$out/e2fsck-$2.log" >&2
        exit 1
    fi
}

case $fs in
    tmpfs)
        mount -t tmpfs -o size=512m tmpfs "$kmnt" || { echo "cannot mount kernel tmpfs" >&2; exit 2; }
        "$conf/run-pjdfstest.sh" "$kmnt" "$out/kernel" "$cfg" >/dev/null
        umount "$kmnt"
        start_rump -o size=512m,allow_other tmpfs
        "$conf/run-pjdfstest.sh" "$rmnt" "$out/rump" "$cfg" >/dev/null
        stop_rump
        ;;
    ext2)
        for who in kernel rump; do mke2fs -q -F -t ext2 -b 4096 "$work/$who.img" 512M; done
        mount -t ext2 -o loop "$work/kernel.img" "$kmnt" || { echo "cannot loop-mount ext2" >&2; exit 2; }
        "$conf/run-pjdfstest.sh" "$kmnt" "$out/kernel" "$cfg" >/dev/null
        umount "$kmnt"
        fsck_ok "$work/kernel.img" kernel
        start_rump -o allow_other "$work/rump.img"
        "$conf/run-pjdfstest.sh" "$rmnt" "$out/rump" "$cfg" >/dev/null
        stop_rump
        fsck_ok "$work/rump.img" rump
        ;;
esac

echo "kernel $fs: $(cat "$out/kernel/pjdfstest.summary")"
echo "rump $fs:   $(cat "$out/rump/pjdfstest.summary")"
kok=$(awk -F'\t' '$2 == "ok"' "$out/kernel/pjdfstest.results.tsv" | wc -l)
if [ "$kok" -eq 0 ]; then echo "kernel run passed nothing: harness broken" >&2; exit 1; fi
# Cases ok on the kernel but not ok on rumpfs.
worse=$(join -t$'\t' <(cut -f1,2 "$out/kernel/pjdfstest.results.tsv") <(cut -f1,2 "$out/rump/pjdfstest.results.tsv") |
    awk -F'\t' '$2 == "ok" && $3 != "ok" {print $1 " (" $3 ")"}')
# link::link_count_max is skipped on every FUSE mount (glibc's
# pathconf(_PC_LINK_MAX) has no value for FUSE), so it cannot run there.
worse=$(echo "$worse" | grep -v '^link::link_count_max (skipped)$' || true)
if [ -n "$worse" ]; then
    echo "passing on the kernel's $fs but not on rumpfs:"
    echo "$worse" | sed 's/^/  /'
    grep -F -f <(echo "$worse" | cut -d' ' -f1) "$out/rump/pjdfstest.failed.txt" | cut -c1-300 | sed 's/^/  /'
    echo "conformance $fs: 0 passed, 1 failed"
    exit 1
fi
echo "conformance $fs: 1 passed, 0 failed"
