#!/usr/bin/env bash
# scripts/demo.sh: the main job of rumpfs, end to end.
# Builds the commands, serves the bundled ext2 image (images/sample.ext2,
# made by images/make-sample.sh) with rump_ext2fs read-only on a fresh mount
# point, shows it, and unmounts. Then the same with a writable copy, and a
# memory file system (rump_tmpfs).
set -eu
cd "$(dirname "$0")/.."
cargo build --release --bins -q
bin=$PWD/target/release
work=$(mktemp -d /tmp/rumpfs-demo.XXXXXX)
mnt=$work/mnt
mkdir "$mnt"
cleanup() {
    mountpoint -q "$mnt" && umount "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
run() { echo "+ $*"; "$@"; }

run "$bin/rump_ext2fs" -o ro images/sample.ext2 "$mnt"
run findmnt "$mnt"
run ls -lR "$mnt"
run cat "$mnt/README.txt"
run df -h "$mnt"
run umount "$mnt"

echo
echo "# a writable copy: write through rump_ext2fs, then let e2fsck judge"
cp images/sample.ext2 "$work/copy.ext2"
run "$bin/rump_ext2fs" "$work/copy.ext2" "$mnt"
run mkdir "$mnt/new"
run cp -R crates/rumpkern/src "$mnt/new/"
run mv "$mnt/docs/notes" "$mnt/new/"
run rm "$mnt/sparse.bin"
run ls -l "$mnt" "$mnt/new"
pid=$(pgrep -n -f "rump_ext2fs $work/copy.ext2") || pid=
run umount "$mnt"
# umount(8) returns as soon as the kernel lets go of a FUSE mount; the server
# then writes back what is still dirty, marks the image clean and exits.
# Wait for that before handing the image to another program.
[ -n "$pid" ] && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
run e2fsck -fn "$work/copy.ext2"

echo
echo "# a memory file system"
run "$bin/rump_tmpfs" -o size=16m tmpfs "$mnt"
echo "hello from a file system running in a user process" > "$mnt/hello.txt"
run ls -la "$mnt"
run df -h "$mnt"
run umount "$mnt"
