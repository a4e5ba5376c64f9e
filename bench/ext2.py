#!/usr/bin/env python3
"""bench/ext2.py: rump_ext2fs against the kernel's ext2 (loop mount) and
fuse2fs on the same images, in the same run (issue 3, item 10).

Workloads (each run timed from mount to unmount, including the server's exit,
page cache dropped before each run, systems interleaved run by run):

  ls      ls -lR of a tree of ~35,000 files in ~2,000 directories (~500 MB)
  out     cp -R of that tree out of the image
  in      cp -R of that tree into a fresh empty image
  bigout  one 700 MB file copied out
  bigin   one 700 MB file copied into a fresh empty image

plus the standalone fs-utils against the kernel: `fsu_ls -lR image` vs mount +
ls -lR + umount, and `fsu_ecp -R` out of the image vs mount + cp -R + umount.
The peak RSS (VmHWM) of the rump_ext2fs server is read at the end of each
large-file run.

Usage: sudo bench/ext2.py [--runs 5] [--work /var/tmp/rumpfs-bench]
       [--only ls,out,...] [--systems kernel,fuse2fs,rump,rumpu] [--small]
  (rumpu: rump_ext2fs with FUSE over io_uring: fuse.enable_uring is set to 1
   for its runs and put back after)
       [--rump-opts blkio=cached,...]
RUMP_EXT2FS=path runs another rump_ext2fs build (A/B comparisons).
Prints a markdown table of medians and ratios; with --write, appends it to
docs/performance.md. Needs root, e2fsprogs, fuse2fs, target/release binaries.
"""
import argparse, os, random, shutil, statistics, subprocess, sys, time, platform

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(TOP, "target", "release")


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def make_tree(root, nfiles, ndirs, total_bytes, seed=1):
    """Deterministic tree: ndirs directories two levels deep, nfiles files
    with log-normal sizes scaled to total_bytes."""
    if os.path.exists(os.path.join(root, ".done")):
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    tops = max(1, int(ndirs ** 0.5))
    dirs = []
    for i in range(tops):
        for j in range(ndirs // tops):
            d = os.path.join(root, f"d{i:03d}", f"s{j:03d}")
            os.makedirs(d, exist_ok=True)
            dirs.append(d)
    sizes = [rng.lognormvariate(8.5, 1.6) for _ in range(nfiles)]
    scale = total_bytes / sum(sizes)
    sizes = [max(0, int(s * scale)) for s in sizes]
    blob = os.urandom(16 << 20)
    for n, size in enumerate(sizes):
        d = dirs[n % len(dirs)]
        off = rng.randrange(0, len(blob) - min(size, len(blob) - 1) or 1)
        with open(os.path.join(d, f"file{n:05d}.dat"), "wb") as f:
            left = size
            while left > 0:
                k = min(left, len(blob) - off)
                f.write(blob[off:off + k])
                left -= k
                off = 0
    open(os.path.join(root, ".done"), "w").close()


def make_big(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    with open(path, "wb") as f:
        left = size
        chunk = os.urandom(8 << 20)
        while left > 0:
            k = min(left, len(chunk))
            f.write(chunk[:k])
            left -= k


def mkfs(img, size_mb, tree=None):
    if os.path.exists(img):
        os.unlink(img)
    cmd = ["mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", "-I", "256"]
    if tree:
        cmd += ["-d", tree]
    sh(cmd + [img, f"{size_mb}M"])


URING = "/sys/module/fuse/parameters/enable_uring"
URING_AT_START = open(URING).read().strip() if os.path.exists(URING) else None


def set_uring(on):
    """The kernel's FUSE-over-io_uring switch (read at INIT, so set before
    mounting); a no-op on kernels without it."""
    if URING_AT_START is not None:
        with open(URING, "w") as f:
            f.write("1" if on else "0")


class Mounted:
    """Mount `img` on `mnt` with `system`; stop() unmounts and waits for
    the server to exit (so write-back is inside the timed region)."""

    rump_opts = ""  # extra -o options for rump_ext2fs (--rump-opts)

    def __init__(self, system, img, mnt, ro):
        self.system, self.mnt, self.proc = system, mnt, None
        if system == "kernel":
            sh(["mount", "-t", "ext2", "-o", ("ro," if ro else "") + "loop", img, mnt])
            return
        if system == "fuse2fs":
            cmd = ["fuse2fs", "-f", img, mnt, "-o", ("ro," if ro else "") + "allow_other"]
        else:
            # rump: the classic /dev/fuse transport; rumpu: FUSE over io_uring.
            set_uring(system == "rumpu")
            opts = ("ro," if ro else "") + "allow_other" + ("," + Mounted.rump_opts if Mounted.rump_opts else "")
            cmd = [os.environ.get("RUMP_EXT2FS", os.path.join(REL, "rump_ext2fs")), "-f", "-o", opts, img, mnt]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2000):
            if os.path.ismount(mnt):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{system} exited before mounting: {cmd}")
            time.sleep(0.005)
        raise RuntimeError(f"{system} did not mount")

    def rss_kib(self):
        if not self.proc:
            return None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def stop(self):
        sh(["umount", self.mnt])
        if self.proc:
            self.proc.wait(timeout=600)
            set_uring(URING_AT_START in ("Y", "1"))


def timed(fn):
    drop_caches()
    t = time.monotonic()
    extra = fn()
    return time.monotonic() - t, extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default="/var/tmp/rumpfs-bench")
    ap.add_argument("--only", default="ls,out,in,bigout,bigin,fsu_ls,fsu_ecp")
    ap.add_argument("--systems", default="kernel,fuse2fs,rump,rumpu",
                    help="rump: rump_ext2fs over /dev/fuse; rumpu: over FUSE io_uring (fuse.enable_uring set for its runs)")
    ap.add_argument("--small", action="store_true", help="a 1/10 scale tree and a 70 MB file (quick check)")
    ap.add_argument("--rump-opts", default="", help="extra -o options for rump_ext2fs (e.g. blkio=cached)")
    ap.add_argument("--write", action="store_true", help="append the results to docs/performance.md")
    a = ap.parse_args()
    work = a.work
    Mounted.rump_opts = a.rump_opts
    os.makedirs(work, exist_ok=True)
    scale = 10 if a.small else 1
    tree = os.path.join(work, "tree" + ("-small" if a.small else ""))
    make_tree(tree, 35000 // scale, 2000 // scale, (500 << 20) // scale)
    big = os.path.join(work, "big" + ("-small" if a.small else ""))
    make_big(big, (700 << 20) // scale)
    tree_img = os.path.join(work, "tree.img")
    big_img = os.path.join(work, "big.img")
    empty_img = os.path.join(work, "empty.img")
    mnt = os.path.join(work, "mnt")
    dst = os.path.join(work, "dst")
    os.makedirs(mnt, exist_ok=True)
    mkfs(tree_img, (900 // scale) + 64, tree)
    bigdir = os.path.join(work, "bigsrc")
    shutil.rmtree(bigdir, ignore_errors=True)
    os.makedirs(bigdir)
    os.link(big, os.path.join(bigdir, "big"))
    mkfs(big_img, (1000 // scale) + 64, bigdir)

    systems = a.systems.split(",")
    work_items = a.only.split(",")
    results = {}  # (workload, system) -> [seconds]
    rss = {}

    def clean_dst():
        # bigout leaves a file at dst, the tree copies a directory.
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        elif os.path.lexists(dst):
            os.unlink(dst)

    def run(workload, system):
        clean_dst()
        if workload == "ls":
            def f():
                m = Mounted(system, tree_img, mnt, True)
                sh(f"ls -lR {mnt} > /dev/null")
                m.stop()
        elif workload == "out":
            def f():
                m = Mounted(system, tree_img, mnt, True)
                sh(["cp", "-R", mnt, dst])
                m.stop()
        elif workload == "bigout":
            def f():
                m = Mounted(system, big_img, mnt, True)
                sh(["cp", os.path.join(mnt, "big"), dst])
                r = m.rss_kib()
                m.stop()
                return r
        elif workload in ("in", "bigin"):
            mkfs(empty_img, ((1000 if workload == "bigin" else 900) // scale) + 64)
            src = tree if workload == "in" else big
            def f():
                m = Mounted(system, empty_img, mnt, False)
                sh(["cp", "-R", src, os.path.join(mnt, "x")])
                r = m.rss_kib()
                m.stop()
                return r
        elif workload == "fsu_ls":
            if system == "rump":
                def f():
                    sh(f"{REL}/fsu_ls -lR {tree_img} > /dev/null")
            else:
                def f():
                    m = Mounted("kernel", tree_img, mnt, True)
                    sh(f"ls -lR {mnt} > /dev/null")
                    m.stop()
        elif workload == "fsu_ecp":
            if system == "rump":
                def f():
                    sh([f"{REL}/fsu_ecp", "-R", tree_img, "/", dst])
            else:
                def f():
                    m = Mounted("kernel", tree_img, mnt, True)
                    sh(["cp", "-R", mnt, dst])
                    m.stop()
        secs, extra = timed(f)
        clean_dst()
        if extra:
            rss.setdefault((workload, system), []).append(extra)
        return secs

    for r in range(a.runs):
        for w in work_items:
            sys_list = ["kernel", "rump"] if w.startswith("fsu_") else systems
            for s in sys_list:
                try:
                    secs = run(w, s)
                except Exception as e:  # keep going: a failed system is reported, not fatal
                    print(f"run {r} {w} {s}: FAILED: {e}", file=sys.stderr)
                    if os.path.ismount(mnt):
                        subprocess.run(["umount", "-l", mnt])
                    secs = float("nan")
                results.setdefault((w, s), []).append(secs)
                print(f"run {r} {w:8s} {s:8s} {secs:8.3f} s", file=sys.stderr)

    names = {"ls": "ls -lR tree", "out": "cp -R tree out", "in": "cp -R tree in", "bigout": "700 MB file out",
             "bigin": "700 MB file in", "fsu_ls": "fsu_ls -lR vs kernel mount+ls -lR",
             "fsu_ecp": "fsu_ecp -R out vs kernel mount+cp -R"}
    lines = []
    lines.append(f"Machine: {platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}; "
                 f"{a.runs} interleaved runs, page cache dropped before each, medians in seconds"
                 + (" (SMALL scale: 1/10)" if a.small else "") + ".")
    lines.append("Command: `sudo bench/ext2.py --runs %d%s%s`" % (a.runs, " --small" if a.small else "",
                                                              f" --rump-opts {a.rump_opts}" if a.rump_opts else ""))
    lines.append("")
    lines.append("| workload | kernel | fuse2fs | rump | rump/kernel | rump/fuse2fs | rump io_uring | io_uring/kernel |")
    lines.append("|---|---|---|---|---|---|---|---|")

    def med(w, s):
        v = [x for x in results.get((w, s), []) if x == x]
        return statistics.median(v) if v else float("nan")

    for w in work_items:
        k, f2, r, ru = med(w, "kernel"), med(w, "fuse2fs"), med(w, "rump"), med(w, "rumpu")
        fmt = lambda x: "—" if x != x else f"{x:.2f}"
        ratio = lambda x, y: "—" if x != x or y != y or y == 0 else f"{x / y:.2f}"
        lines.append(f"| {names[w]} | {fmt(k)} | {fmt(f2)} | {fmt(r)} | {ratio(r, k)} | {ratio(r, f2)} "
                     f"| {fmt(ru)} | {ratio(ru, k)} |")
    if rss:
        lines.append("")
        for (w, s), v in sorted(rss.items()):
            lines.append(f"Peak RSS of the {s} server during {names[w]}: {max(v) / 1024:.1f} MiB (max over runs).")
    text = "\n".join(lines)
    print(text)
    if a.write:
        with open(os.path.join(TOP, "docs", "performance.md"), "a") as f:
            f.write("\n## ext2 (%s)\n\n%s\n" % (time.strftime("%Y-%m-%d"), text))


if __name__ == "__main__":
    main()
