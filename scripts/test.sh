#!/usr/bin/env bash
# scripts/test.sh: every test of rumpfs, as the README's second command.
#   1. cargo test over the whole workspace (unit, doc and end-to-end FUSE tests;
#      the FUSE tests need root and /dev/fuse);
#   2. pjdfstest side by side with the kernel: tmpfs vs rump_tmpfs and ext2 vs rump_ext2fs
#      (scripts/conformance.sh tmpfs, scripts/conformance.sh ext2), which fails if a rumpfs server fails a case
#      the kernel passes;
#   3. where the kernel has FUSE over io_uring (its fuse.enable_uring switch
#      exists and we may set it): the FUSE end-to-end tests and the ext2
#      conformance run again with the switch on, so every request goes
#      through p2k's rings; the switch is put back as it was on exit.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
cargo test --release --workspace
if [ "${SKIP_CONFORMANCE:-0}" = 1 ]; then
    echo "conformance skipped (SKIP_CONFORMANCE=1)"
else
    scripts/conformance.sh tmpfs
    scripts/conformance.sh ext2
fi
sw=/sys/module/fuse/parameters/enable_uring
if [ -w "$sw" ]; then
    old=$(cat "$sw")
    trap 'case $old in Y|1) echo 1 ;; *) echo 0 ;; esac > "$sw"' EXIT
    echo 1 > "$sw"
    echo "== again with FUSE over io_uring (fuse.enable_uring=1) =="
    cargo test --release --test fuse_tmpfs --test fuse_ext2 --test fuse_msdos \
        --test fuse_leak --test fuse_panic
    if [ "${SKIP_CONFORMANCE:-0}" != 1 ]; then
        scripts/conformance.sh ext2 target/conformance/ext2-uring
    fi
else
    echo "FUSE over io_uring not tested: $sw missing or not writable"
fi
