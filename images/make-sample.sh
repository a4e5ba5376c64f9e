#!/usr/bin/env bash
# images/make-sample.sh: builds images/sample.ext2, the small image the demo
# (scripts/demo.sh) mounts, from a tree this script writes. Needs mke2fs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/docs/notes" "$tree/src/deep/er/still" "$tree/empty"
cat > "$tree/README.txt" <<'TXT'
This ext2 image is served by rump_ext2fs: the ext2 driver of rumpfs runs in
this user process, not in the kernel. Try: ls -lR, cat, cp, df, stat.
TXT
for i in $(seq 1 20); do printf 'note %d\n' "$i" > "$tree/docs/notes/note$i.txt"; done
seq 1 20000 > "$tree/src/numbers.txt"
printf 'int main(void) { return 0; }\n' > "$tree/src/deep/er/still/main.c"
ln -s ../README.txt "$tree/docs/readme-link"
ln "$tree/src/numbers.txt" "$tree/src/numbers-hardlink.txt"
dd if=/dev/zero of="$tree/sparse.bin" bs=1 count=0 seek=1M status=none
printf 'end\n' >> "$tree/sparse.bin"
chmod 0640 "$tree/docs/notes/note1.txt"
find "$tree" -exec touch -h -d '2026-11-01 12:00:00 UTC' {} +
rm -f "$here/sample.ext2"
E2FSPROGS_FAKE_TIME=1793534400 mke2fs -q -t ext2 -b 1024 -L rumpfs-sample \
    -U 6b3d1c2e-0f4a-4b8e-9a61-2f1d5c7e9a10 -E root_owner=0:0,hash_seed=6b3d1c2e-0f4a-4b8e-9a61-2f1d5c7e9a10 \
    -d "$tree" "$here/sample.ext2" 2M
echo "wrote $here/sample.ext2"
