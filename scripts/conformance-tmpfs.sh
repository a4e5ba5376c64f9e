#!/usr/bin/env bash
# scripts/conformance-tmpfs.sh [OUTDIR]
#
# pjdfstest side by side: the kernel's tmpfs and rump_tmpfs on this machine,
# same config (../shared/conformance/configs/posix-1s.toml by default; set
# PJD_CONFIG to another). Fails (exit 1) if any case that passes on the
# kernel's tmpfs does not pass on rump_tmpfs. Prints both counts.
#
# Needs root, /dev/fuse, pjdfstest (cargo install pjdfstest) and a built
# target/release/rump_tmpfs. Every mount it makes is undone on exit.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
conf=${CONFORMANCE_DIR:-$top/../shared/conformance}
cfg=${PJD_CONFIG:-$conf/configs/posix-1s.toml}
out=${1:-$top/target/conformance/tmpfs}
bin=${RUMP_TMPFS:-$top/target/release/rump_tmpfs}
[ -x "$bin" ] || { echo "conformance-tmpfs: $bin not built (cargo build --release)" >&2; exit 2; }
[ -d "$conf" ] || { echo "conformance-tmpfs: no conformance harness at $conf" >&2; exit 2; }

# pjdfstest's *_enametoolong_path cases need the mount point away from /tmp
# (its secondary directory lives in /var/tmp); use /var/tmp for both.
work=$(mktemp -d /var/tmp/rumpfs-conf.XXXXXX)
chmod 755 "$work"   # the dummy users of pjdfstest must reach the mounts
# Both mount points have paths of the same length: pjdfstest's
# *_enametoolong_path cases depend on it.
kmnt=$work/kmnt rmnt=$work/rmnt
mkdir -p "$kmnt" "$rmnt" "$out"
cleanup() {
    for m in "$kmnt" "$rmnt"; do
        if mountpoint -q "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

mount -t tmpfs -o size=512m tmpfs "$kmnt" || { echo "cannot mount kernel tmpfs" >&2; exit 2; }
"$conf/run-pjdfstest.sh" "$kmnt" "$out/kernel" "$cfg" >/dev/null
umount "$kmnt"

"$bin" -o size=512m,allow_other tmpfs "$rmnt" || { echo "rump_tmpfs did not mount" >&2; exit 1; }
"$conf/run-pjdfstest.sh" "$rmnt" "$out/rump" "$cfg" >/dev/null
umount "$rmnt"

echo "kernel tmpfs: $(cat "$out/kernel/pjdfstest.summary")"
echo "rump_tmpfs:   $(cat "$out/rump/pjdfstest.summary")"
# Cases ok on the kernel but not ok on rump_tmpfs.
worse=$(join -t$'\t' <(cut -f1,2 "$out/kernel/pjdfstest.results.tsv") <(cut -f1,2 "$out/rump/pjdfstest.results.tsv") |
    awk -F'\t' '$2 == "ok" && $3 != "ok" {print $1 " (" $3 ")"}')
kok=$(awk -F'\t' '$2 == "ok"' "$out/kernel/pjdfstest.results.tsv" | wc -l)
if [ "$kok" -eq 0 ]; then echo "kernel run passed nothing: harness broken" >&2; exit 1; fi
if [ -n "$worse" ]; then
    echo "passing on the kernel's tmpfs but not on rump_tmpfs:"
    echo "$worse" | sed 's/^/  /'
    grep -F -f <(echo "$worse" | cut -d' ' -f1) "$out/rump/pjdfstest.failed.txt" | cut -c1-300 | sed 's/^/  /'
    echo "conformance: 0 passed, 1 failed"
    exit 1
fi
echo "conformance: 1 passed, 0 failed"
