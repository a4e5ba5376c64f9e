#!/bin/bash
# bench/rmrf.sh [RUNS] [BIN...]: rm -rf of 5,000 small files in 50
# directories on an ext2 image (mke2fs -b 4096 -d), caches dropped, timed
# from the start of rm to the end of umount (and of the server), kernel
# loop mount against rump_ext2fs builds (default: target/release), runs
# interleaved; e2fsck -fn must be clean after each run. Needs root.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
shift || true
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$top/target/release/rump_ext2fs")
W=${RMRF_WORK:-/var/tmp/rumpfs-rmrf}
mkdir -p "$W/m" "$W/src"
if [ ! -f "$W/src/.done" ]; then
    for d in $(seq 50); do
        mkdir -p "$W/src/d$d"
        for f in $(seq 100); do echo "file $d $f" > "$W/src/d$d/f$f"; done
    done
    touch "$W/src/.done"
fi
one() {
    rm -f "$W/img"
    mke2fs -q -F -t ext2 -b 4096 -d "$W/src" "$W/img" 256M
    sync; echo 3 > /proc/sys/vm/drop_caches
    local pid=
    if [ "$1" = kernel ]; then
        mount -o loop "$W/img" "$W/m"
    else
        "$1" -f "$W/img" "$W/m" & pid=$!
        for _ in $(seq 200); do mountpoint -q "$W/m" && break; sleep 0.05; done
    fi
    local t0 t1
    t0=$(date +%s.%N)
    rm -rf "$W"/m/d*
    umount "$W/m"
    [ -z "$pid" ] || wait "$pid"
    t1=$(date +%s.%N)
    e2fsck -fn "$W/img" > /dev/null 2>&1 || { echo "$1: e2fsck -fn unclean" >&2; exit 1; }
    printf '%s %.3f\n' "$1" "$(echo "$t1 - $t0" | bc)"
}
for _ in $(seq "$runs"); do
    one kernel
    for b in "${bins[@]}"; do one "$b"; done
done
