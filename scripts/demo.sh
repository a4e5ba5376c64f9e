#!/usr/bin/env bash
# scripts/demo.sh: the main job of rumpfs, end to end.
# Builds the commands, starts a rumpfs file server on a fresh mount point,
# uses the mount like any other directory, shows it, and unmounts.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --bins -q
bin=target/release
mnt=$(mktemp -d /tmp/rumpfs-demo.XXXXXX)
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; rmdir "$mnt"; }
trap cleanup EXIT

echo "+ rump_tmpfs -o size=64m tmpfs $mnt"
"$bin/rump_tmpfs" -o size=64m tmpfs "$mnt"
mkdir -p "$mnt/docs/deep/er"
cp README.md "$mnt/docs/"
echo "hello from a file system running in a user process" > "$mnt/hello.txt"
ln -s docs/README.md "$mnt/readme-link"
ln "$mnt/hello.txt" "$mnt/hello-hardlink.txt"
mkfifo "$mnt/fifo"
echo "+ ls -laR $mnt"; ls -laR "$mnt"
echo "+ cat $mnt/hello.txt"; cat "$mnt/hello.txt"
echo "+ df -h $mnt"; df -h "$mnt"
echo "+ findmnt $mnt"; findmnt "$mnt"
echo "+ umount $mnt"
