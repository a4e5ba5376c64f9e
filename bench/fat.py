#!/usr/bin/env python3
"""bench/fat.py: rump_msdos against fusefat and mtools on the same FAT32
images, in the same run (issue 4, item 10); rump_ext2fs on an ext2 image of
the same tree as the yardstick for "within 1.5x of rump_ext2fs".

Workloads (FUSE systems timed from mount to unmount, including the server's
exit; page cache dropped before each run; systems interleaved run by run):

  ls      ls -lR of a tree of ~35,000 files in ~2,000 directories (~500 MB)
          (mtools: mdir -/)
  out     cp -R of that tree out of the image (mtools: mcopy -s -n ::/ DST)
  in      cp -R of that tree into a fresh empty image (mtools: mcopy -s)
  bigout  one 700 MB file copied out
  bigin   one 700 MB file copied into a fresh empty image

and the standalone fs-utils against mtools (no mount at all on either side):

  fsu_ls       fsu_ls -lR IMAGE              vs mdir -/ -i IMAGE ::/
  fsu_ecp_out  fsu_ecp -R IMAGE / DST        vs mcopy -s -n -i IMAGE ::/ DST
  fsu_ecp_in   fsu_ecp -i -R IMAGE TREE /x   vs mcopy -s -i IMAGE TREE ::/

fusefat is slow: it runs only in the first --fusefat-runs runs and each of its
runs is killed after --fusefat-timeout seconds (reported as "> N").
Times are wall-clock around a blocking wait for the command (see sh()).
With --write, the medians and every run's value are appended to
bench/results/fat.md.

Usage: sudo bench/fat.py [--runs 3] [--work /var/tmp/rumpfs-fatbench]
       [--only ls,out,...] [--systems rump,fusefat,mtools,ext2] [--small]
       [--fusefat-runs 1] [--fusefat-timeout 300] [--write]
RUMP_MSDOS=path / RUMP_EXT2FS=path run other builds (A/B comparisons);
RUMPFS_BIN=dir takes every binary from dir (a frozen copy of target/release).
Prints a markdown table of medians and ratios; with --write, writes it to
bench/results/fat.md. Needs root, dosfstools, mtools, fusefat, e2fsprogs,
target/release binaries (rump_msdos, rump_ext2fs, fsu_ls, fsu_ecp).
"""
import argparse, os, random, shutil, signal, statistics, subprocess, sys, threading, time, platform

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.environ.get("RUMPFS_BIN", os.path.join(TOP, "target", "release"))
MTENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", LC_ALL="C.UTF-8", LANG="C.UTF-8", TZ="UTC")


class Timeout(Exception):
    pass


def sh(cmd, timeout=None, **kw):
    """Run cmd, raising CalledProcessError on failure and Timeout after
    `timeout` seconds (the process is then killed). Waits with a blocking
    waitpid: subprocess.run(timeout=...) polls with sleeps of up to 50 ms,
    which rounded every timed run up to the next ~50 ms step."""
    p = subprocess.Popen(cmd, shell=isinstance(cmd, str), **kw)
    expired = []
    timer = None
    if timeout is not None:
        def kill():
            expired.append(True)
            p.kill()
        timer = threading.Timer(timeout, kill)
        timer.start()
    try:
        rc = p.wait()
    finally:
        if timer is not None:
            timer.cancel()
    if expired:
        raise Timeout(cmd)
    if rc != 0:
        raise subprocess.CalledProcessError(rc, cmd)
    return subprocess.CompletedProcess(cmd, rc)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def make_tree(root, nfiles, ndirs, total_bytes, seed=1):
    """Deterministic tree (as bench/ext2.py): ndirs directories two levels
    deep, nfiles files with log-normal sizes scaled to total_bytes."""
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


def mkfat(img, size_mb, srcs=()):
    """A sparse FAT32 image filled with `mcopy -s` from srcs (into ::/)."""
    if os.path.exists(img):
        os.unlink(img)
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    sh(["mkfs.fat", "-F", "32", img], stdout=subprocess.DEVNULL)
    if srcs:
        sh(["mcopy", "-s", "-i", img] + list(srcs) + ["::/"], env=MTENV)


def mkext2(img, size_mb, tree=None):
    if os.path.exists(img):
        os.unlink(img)
    cmd = ["mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", "-I", "256"]
    if tree:
        cmd += ["-d", tree]
    sh(cmd + [img, f"{size_mb}M"], stdout=subprocess.DEVNULL)


class Mounted:
    """Mount `img` on `mnt` with a FUSE server; stop() unmounts and waits
    for the server to exit (so write-back is inside the timed region)."""

    def __init__(self, system, img, mnt, ro):
        self.system, self.mnt = system, mnt
        if system == "fusefat":
            cmd = ["fusefat", "-f", "-o", "ro" if ro else "rw+", img, mnt]
        elif system == "ext2":
            cmd = [os.environ.get("RUMP_EXT2FS", os.path.join(REL, "rump_ext2fs")), "-f"]
            cmd += (["-o", "ro"] if ro else []) + [img, mnt]
        else:
            cmd = [os.environ.get("RUMP_MSDOS", os.path.join(REL, "rump_msdos")), "-f"]
            cmd += (["-o", "ro"] if ro else []) + [img, mnt]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(4000):
            if os.path.ismount(mnt):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{system} exited before mounting: {cmd}")
            time.sleep(0.005)
        raise RuntimeError(f"{system} did not mount")

    def stop(self):
        sh(["umount", self.mnt])
        self.proc.wait(timeout=900)

    def kill(self):
        """After a timeout: stop this server (only the one we started)."""
        subprocess.run(["umount", "-l", self.mnt])
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/var/tmp/rumpfs-fatbench")
    ap.add_argument("--only", default="ls,out,in,bigout,bigin,fsu_ls,fsu_ecp_out,fsu_ecp_in")
    ap.add_argument("--systems", default="rump,fusefat,mtools,ext2")
    ap.add_argument("--small", action="store_true", help="a 1/10 scale tree and a 70 MB file (quick check)")
    ap.add_argument("--fusefat-runs", type=int, default=1, help="fusefat only in the first N runs")
    ap.add_argument("--fusefat-timeout", type=float, default=300.0, help="seconds before a fusefat run is killed")
    ap.add_argument("--write", action="store_true", help="write the results to bench/results/fat.md")
    a = ap.parse_args()
    work = a.work
    os.makedirs(work, exist_ok=True)
    scale = 10 if a.small else 1
    sfx = "-small" if a.small else ""
    tree = os.path.join(work, "tree" + sfx)
    make_tree(tree, 35000 // scale, 2000 // scale, (500 << 20) // scale)
    big = os.path.join(work, "big" + sfx)
    make_big(big, (700 << 20) // scale)
    systems = a.systems.split(",")
    work_items = a.only.split(",")
    mnt = os.path.join(work, "mnt")
    dst = os.path.join(work, "dst")
    os.makedirs(mnt, exist_ok=True)
    tree_mb, big_mb = (900 // scale) + 200, (1000 // scale) + 200
    print("building images ...", file=sys.stderr)
    tree_img = os.path.join(work, "tree.img")
    big_img = os.path.join(work, "big.img")
    empty_img = os.path.join(work, "empty.img")
    mkfat(tree_img, tree_mb, [os.path.join(tree, n) for n in sorted(os.listdir(tree)) if n != ".done"])
    bigdir = os.path.join(work, "bigsrc")
    shutil.rmtree(bigdir, ignore_errors=True)
    os.makedirs(bigdir)
    os.link(big, os.path.join(bigdir, "big"))
    mkfat(big_img, big_mb, [os.path.join(bigdir, "big")])
    ext_tree_img = os.path.join(work, "tree.ext2")
    ext_big_img = os.path.join(work, "big.ext2")
    if "ext2" in systems:
        mkext2(ext_tree_img, tree_mb, tree)
        mkext2(ext_big_img, big_mb, bigdir)
    sh(["fsck.fat", "-n", tree_img], stdout=subprocess.DEVNULL)

    results = {}  # (workload, system) -> [seconds or inf]

    def clean_dst():
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        elif os.path.lexists(dst):
            os.unlink(dst)

    def fresh_empty(system, bigger):
        size = big_mb if bigger else tree_mb
        if system == "ext2":
            mkext2(empty_img, size)
        else:
            mkfat(empty_img, size)

    def run(w, system, tmo):
        """Set up, then return the timed function."""
        clean_dst()
        ext = system == "ext2"
        timg = ext_tree_img if ext else tree_img
        bimg = ext_big_img if ext else big_img
        if w in ("in", "bigin", "fsu_ecp_in"):
            fresh_empty(system, w == "bigin")
        src = big if w == "bigin" else tree
        if system == "mtools":
            cmds = {
                "ls": f"mdir -/ -i {timg} ::/ > /dev/null",
                "fsu_ls": f"mdir -/ -i {timg} ::/ > /dev/null",
                "out": f"mkdir {dst} && mcopy -s -n -i {timg} ::/ {dst}",
                "fsu_ecp_out": f"mkdir {dst} && mcopy -s -n -i {timg} ::/ {dst}",
                "in": f"mcopy -s -i {empty_img} {tree} ::/",
                "fsu_ecp_in": f"mcopy -s -i {empty_img} {tree} ::/",
                "bigout": f"mcopy -n -i {bimg} ::/big {dst}",
                "bigin": f"mcopy -i {empty_img} {big} ::/big",
            }
            return lambda: sh(cmds[w], env=MTENV, timeout=tmo)
        if w.startswith("fsu_"):
            cmds = {
                "fsu_ls": f"{REL}/fsu_ls -lR {timg} > /dev/null",
                "fsu_ecp_out": f"{REL}/fsu_ecp -R {timg} / {dst}",
                "fsu_ecp_in": f"{REL}/fsu_ecp -i -R {empty_img} {tree} /x",
            }
            return lambda: sh(cmds[w], timeout=tmo)
        img = {"ls": timg, "out": timg, "bigout": bimg, "in": empty_img, "bigin": empty_img}[w]
        ro = w in ("ls", "out", "bigout")
        body = {
            "ls": f"ls -lR {mnt} > /dev/null",
            "out": f"cp -R {mnt} {dst}",
            "bigout": f"cp {mnt}/big {dst}",
            "in": f"cp -R {src} {mnt}/x",
            "bigin": f"cp {src} {mnt}/big",
        }[w]

        def f():
            m = Mounted(system, img, mnt, ro)
            try:
                sh(body, timeout=tmo)
                m.stop()
            except BaseException:
                m.kill()
                raise
        return f

    for r in range(a.runs):
        for w in work_items:
            if w.startswith("fsu_"):
                sys_list = [s for s in ("rump", "mtools") if s in systems]
            else:
                sys_list = list(systems)
            # Rotate the order run by run: the first system after a
            # write-heavy workload meets the host still writing back.
            k = r % len(sys_list)
            sys_list = sys_list[k:] + sys_list[:k]
            for s in sys_list:
                if s == "fusefat" and r >= a.fusefat_runs:
                    continue
                tmo = a.fusefat_timeout if s == "fusefat" else 1800
                try:
                    f = run(w, s, tmo)
                    drop_caches()
                    time.sleep(1)
                    t = time.monotonic()
                    f()
                    secs = time.monotonic() - t
                except Timeout:
                    secs = float("inf")
                except Exception as e:  # a failed system is reported, not fatal
                    print(f"run {r} {w} {s}: FAILED: {e}", file=sys.stderr)
                    if os.path.ismount(mnt):
                        subprocess.run(["umount", "-l", mnt])
                    secs = float("nan")
                clean_dst()
                results.setdefault((w, s), []).append(secs)
                print(f"run {r} {w:11s} {s:8s} {secs:8.3f} s", file=sys.stderr)

    names = {"ls": "ls -lR tree (mtools: mdir -/)", "out": "copy tree out", "in": "copy tree in",
             "bigout": "700 MB file out", "bigin": "700 MB file in",
             "fsu_ls": "fsu_ls -lR (vs mdir -/)", "fsu_ecp_out": "fsu_ecp -R out (vs mcopy -s)",
             "fsu_ecp_in": "fsu_ecp -i -R in (vs mcopy -s)"}
    if a.small:
        names = {k: v.replace("700 MB", "70 MB") for k, v in names.items()}
    lines = []
    lines.append(f"Machine: {platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}; "
                 f"{a.runs} interleaved runs (fusefat: {a.fusefat_runs}, killed after {a.fusefat_timeout:.0f} s), "
                 f"page cache dropped before each, medians in seconds"
                 + (" (SMALL scale: 1/10)" if a.small else "") + ". FUSE times include mount and unmount.")
    lines.append("Command: `sudo bench/fat.py %s`" % " ".join(x for x in sys.argv[1:] if x != "--write"))
    lines.append("")
    lines.append("| workload | rump_msdos | fusefat | mtools | rump_ext2fs | rump/fusefat | rump/mtools | rump/ext2 |")
    lines.append("|---|---|---|---|---|---|---|---|")

    def med(w, s):
        v = [x for x in results.get((w, s), []) if x == x]
        return statistics.median(v) if v else float("nan")

    def fmt(x, s):
        if x != x:
            return "—"
        if x == float("inf"):
            return f"> {a.fusefat_timeout:.0f} (killed)" if s == "fusefat" else "timeout"
        return f"{x:.3f}"

    def ratio(x, y):
        if x != x or y != y or y == 0:
            return "—"
        if y == float("inf"):
            return f"< {x / a.fusefat_timeout:.3f}"
        return f"{x / y:.2f}"

    for w in work_items:
        r, ff, mt, e2 = (med(w, s) for s in ("rump", "fusefat", "mtools", "ext2"))
        lines.append(f"| {names[w]} | {fmt(r, 'rump')} | {fmt(ff, 'fusefat')} | {fmt(mt, 'mtools')} | "
                     f"{fmt(e2, 'ext2')} | {ratio(r, ff)} | {ratio(r, mt)} | {ratio(r, e2)} |")
    lines.append("")
    lines.append("Per-run values (seconds, in run order):")
    lines.append("")
    lines.append("| workload | system | runs | ratio to mtools, per run |")
    lines.append("|---|---|---|---|")
    for w in work_items:
        for s in ("rump", "fusefat", "mtools", "ext2"):
            v = results.get((w, s))
            if not v:
                continue
            per = ""
            mt = results.get((w, "mtools"), [])
            if s != "mtools" and len(mt) == len(v):
                per = " ".join(ratio(x, y) for x, y in zip(v, mt))
            lines.append(f"| {names[w]} | {s} | {' '.join(fmt(x, s) for x in v)} | {per} |")
    text = "\n".join(lines)
    print(text)
    if a.write:
        os.makedirs(os.path.join(TOP, "bench", "results"), exist_ok=True)
        with open(os.path.join(TOP, "bench", "results", "fat.md"), "a") as f:
            f.write("\n## %s%s\n\n%s\n" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                           " (small)" if a.small else "", text))


if __name__ == "__main__":
    main()
