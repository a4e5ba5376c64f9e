#!/usr/bin/env bash
# scripts/test.sh: every test of rumpfs, as the README's second command.
#   1. cargo test over the whole workspace (unit, doc and end-to-end FUSE tests;
#      the FUSE tests need root and /dev/fuse);
#   2. pjdfstest side by side with the kernel: tmpfs vs rump_tmpfs and ext2 vs rump_ext2fs
#      (scripts/conformance.sh tmpfs, scripts/conformance.sh ext2), which fails if a rumpfs server fails a case
#      the kernel passes.
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
