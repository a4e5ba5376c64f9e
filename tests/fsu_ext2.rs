//! fs-utils on ext2 images made by mke2fs -d from a known tree: fsu_ls
//! judged by GNU ls on a kernel loop mount of the same image and by the
//! tree itself; fsu_cat, fsu_ecp (out and in), fsu_write, fsu_mkdir,
//! fsu_rm judged by the tree, e2fsck -fn and read-back. Needs root (loop
//! mounts, owners, fifos), e2fsprogs.

mod fsu_support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use fsu_support::*;

/// A read-only kernel loop mount, unmounted on drop.
struct LoopMount(PathBuf);

impl LoopMount {
    fn new(img: &Path, mp: &Path) -> LoopMount {
        fs::create_dir_all(mp).unwrap();
        sh(Command::new("mount")
            .args(["-t", "ext2", "-o", "loop,ro"])
            .arg(img)
            .arg(mp));
        LoopMount(mp.to_path_buf())
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        // A just-made loop mount can be briefly busy (udev probing the
        // new loop device): retry, then detach lazily.
        for _ in 0..50 {
            let st = Command::new("umount")
                .arg(&self.0)
                .stderr(std::process::Stdio::null())
                .status();
            if matches!(st, Ok(s) if s.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn setup(tag: &str) -> (Scratch, PathBuf, PathBuf) {
    let sc = Scratch::new(tag);
    let tree = sc.path("tree");
    make_tree(&tree, true);
    let img = sc.path("img");
    ext2_image(&tree, &img, &[]);
    (sc, tree, img)
}

/// GNU ls run in `dir` with `args` (C locale, UTC).
fn gnu_ls(dir: &Path, args: &[&str]) -> String {
    let o = sh(Command::new("ls")
        .args(args)
        .current_dir(dir)
        .env("TZ", "UTC")
        .env("LC_ALL", "C"));
    text(&o.stdout)
}

#[test]
fn ls_matches_gnu_ls_on_a_kernel_mount() {
    for bs in ["1024", "4096"] {
        let sc = Scratch::new("ls-kernel");
        let tree = sc.path("tree");
        make_tree(&tree, true);
        let img = sc.path("img");
        ext2_image(&tree, &img, &["-b", bs]);
        let mnt = LoopMount::new(&img, &sc.path("mnt"));
        let cases: &[&[&str]] = &[
            &["-lA"],
            &["-lAR"],
            &["-lAn"],
            &["-lAi"],
            &["-lAh"],
            &["-lAF"],
            &["-AF"],
            &["-1A"],
            &["-lAS"],
            &["-lAt"],
            &["-lAtr"],
            &["-lASr"],
            &["-lAiR"],
            &["-la", "docs"],
            &["-laR", "docs"],
            &["-ld", "docs", "hello.txt", "short-link", "dir-link"],
            &["-l", "dir-link"],
            &["dir-link"],
            &["-R"],
            &["-i", "docs"],
            &["-l", "docs/readme", "docs", "empty"],
            &["-Fd", "empty", "exec.sh", "docs/fifo"],
            &["-lh", "docs/deep/er"],
        ];
        for args in cases {
            let want = gnu_ls(&mnt.0, args);
            let mut a = vec![s(&img)];
            a.extend_from_slice(args);
            let got = text(&ok(fsu("fsu_ls", &a)));
            assert_eq!(got, want, "fsu_ls {args:?} (block size {bs})");
        }
    }
}

#[test]
fn ls_long_against_the_tree() {
    let (_sc, tree, img) = setup("ls-tree");
    let out = text(&ok(fsu("fsu_ls", &[s(&img), "-lAn", "docs"])));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("total "), "{out}");
    let mut names = Vec::new();
    for l in &lines[1..] {
        let f: Vec<&str> = l.split_whitespace().collect();
        let name = *f.last().unwrap();
        names.push(name.to_string());
        let m = fs::symlink_metadata(tree.join("docs").join(name)).unwrap();
        assert_eq!(f[1].parse::<u64>().unwrap(), m.nlink(), "{l}");
        assert_eq!(f[2].parse::<u32>().unwrap(), m.uid(), "{l}");
        assert_eq!(f[3].parse::<u32>().unwrap(), m.gid(), "{l}");
        let t = f[0].chars().next().unwrap();
        let ft = m.file_type();
        let want_t = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_file() {
            '-'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else {
            'p'
        };
        if ft.is_char_device() || ft.is_block_device() {
            let rdev = m.rdev();
            let want = format!("{}, {}", libc::major(rdev), libc::minor(rdev));
            assert_eq!(format!("{} {}", f[4], f[5]), want, "{l}");
        }
        assert_eq!(t, want_t, "{l}");
        if m.is_file() {
            assert_eq!(f[4].parse::<u64>().unwrap(), m.len(), "{l}");
        }
    }
    assert_eq!(
        names,
        [
            "deep",
            "disk",
            "empty-file",
            "fifo",
            "hello-link",
            "readme",
            "tty"
        ]
    );
    // Modes and owners by name.
    let out = text(&ok(fsu(
        "fsu_ls",
        &[s(&img), "-l", "docs/readme", "docs/deep/er/leaf.bin"],
    )));
    let l: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        l[0][..5],
        ["-rwsr-xr-x", "1", "root", "root", "300000"],
        "{out}"
    );
    assert_eq!(l[0][8], "docs/deep/er/leaf.bin", "{out}");
    assert_eq!(
        l[1][..5],
        ["-rw-------", "1", "4321", "8765", "20"],
        "{out}"
    );
    assert_eq!(l[1][8], "docs/readme", "{out}");
    // Dates: an old file shows the year, a recent one the time.
    let out = text(&ok(fsu("fsu_ls", &[s(&img), "-l", "hello.txt"])));
    assert!(out.contains(" Sep 13  2020 hello.txt"), "{out}");
    let out = text(&ok(fsu("fsu_ls", &[s(&img), "-l", "short-link"])));
    assert!(out.starts_with("lrwxrwxrwx 1 root root 9 "), "{out}");
    assert!(out.ends_with(" short-link -> hello.txt\n"), "{out}");
    // Hard links share the inode number.
    let out = text(&ok(fsu(
        "fsu_ls",
        &[s(&img), "-i", "hello.txt", "docs/hello-link"],
    )));
    let inos: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(inos.len(), 2);
    assert_eq!(inos[0], inos[1], "{out}");
    // Hidden files only with -a/-A; . and .. only with -a.
    let plain = text(&ok(fsu("fsu_ls", &[s(&img)])));
    assert!(
        !plain.contains(".hidden") && !plain.lines().any(|l| l == "."),
        "{plain}"
    );
    let a = text(&ok(fsu("fsu_ls", &[s(&img), "-a"])));
    assert!(
        a.lines().any(|l| l == ".") && a.lines().any(|l| l == "..") && a.contains(".hidden"),
        "{a}"
    );
    // Options after the paths and bundled: the same.
    assert_eq!(
        ok(fsu("fsu_ls", &["-laR", s(&img)])),
        ok(fsu("fsu_ls", &[s(&img), "-l", "-a", "-R"]))
    );
}

#[test]
fn ls_errors() {
    let (_sc, _tree, img) = setup("ls-err");
    let o = fsu("fsu_ls", &[s(&img), "/nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "fsu_ls: /nope: No such file or directory\n"
    );
    // The other operands are still listed.
    let o = fsu("fsu_ls", &[s(&img), "nope", "hello.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stdout), "hello.txt\n");
    let o = fsu("fsu_ls", &[s(&img), "-Z"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("Usage: fsu_ls"),
        "{}",
        text(&o.stderr)
    );
    let o = fsu("fsu_ls", &[]);
    assert_eq!(o.status.code(), Some(2));
    // An image that does not exist, one no driver recognises, a bad type.
    let missing = img.with_file_name("missing.img");
    let o = fsu("fsu_ls", &[s(&missing)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains(&format!("{}: No such file or directory", missing.display())));
    let zeros = img.with_file_name("zeros.img");
    fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let o = fsu("fsu_ls", &[s(&zeros)]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains(s(&zeros)) && e.contains("no file system recognised"),
        "{e}"
    );
    let o = fsu("fsu_ls", &["--type", "nosuchfs", s(&img)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("unknown file system type"),
        "{}",
        text(&o.stderr)
    );
    // Forcing the right type works.
    ok(fsu("fsu_ls", &["--type", "ext2", s(&img)]));
    ok(fsu("fsu_cat", &["-t", "ext2fs", s(&img), "hello.txt"]));
}

#[test]
fn read_only_commands_leave_the_image_alone() {
    let (sc, _tree, img) = setup("ro");
    let before = fs::read(&img).unwrap();
    ok(fsu("fsu_ls", &[s(&img), "-laR"]));
    ok(fsu(
        "fsu_cat",
        &[s(&img), "hello.txt", "docs/deep/er/leaf.bin"],
    ));
    let out = sc.path("out");
    ok(fsu("fsu_ecp", &[s(&img), "-R", "-p", "/", s(&out)]));
    // Even when -o rw is asked for.
    ok(fsu("fsu_ls", &["-o", "rw", s(&img), "-l"]));
    assert!(fs::read(&img).unwrap() == before, "the image changed");
}

#[test]
fn cat_bytes() {
    let (_sc, tree, img) = setup("cat");
    for f in [
        "hello.txt",
        "docs/deep/er/leaf.bin",
        "docs/empty-file",
        "with space.txt",
        "short-link",
        "long-link",
    ] {
        assert_eq!(
            ok(fsu("fsu_cat", &[s(&img), f])),
            fs::read(tree.join(f)).unwrap(),
            "{f}"
        );
    }
    let mut both = fs::read(tree.join("hello.txt")).unwrap();
    both.extend(fs::read(tree.join("docs/readme")).unwrap());
    assert_eq!(
        ok(fsu("fsu_cat", &[s(&img), "/hello.txt", "docs/readme"])),
        both
    );
    let o = fsu("fsu_cat", &[s(&img), "nope", "hello.txt", "docs"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(o.stdout, fs::read(tree.join("hello.txt")).unwrap());
    assert_eq!(
        text(&o.stderr),
        "fsu_cat: nope: No such file or directory\nfsu_cat: docs: Is a directory\n"
    );
    assert_eq!(fsu("fsu_cat", &[s(&img)]).status.code(), Some(2));
}

/// The copy of `tree` at `out` is equal (content, types, modes, times,
/// symlink targets), the fifo included; hard links are hard links.
fn assert_same_tree(tree: &Path, out: &Path, times: bool) {
    let a = describe(tree, times);
    let b = describe(out, times);
    assert_eq!(a, b);
    let o = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(tree)
        .arg(out)
        .output()
        .unwrap();
    for l in text(&o.stdout).lines() {
        assert!(
            l.contains("fifo") || l.contains("special file"),
            "diff -r: {l}"
        );
    }
    let i1 = fs::metadata(out.join("hello.txt")).unwrap().ino();
    let i2 = fs::metadata(out.join("docs/hello-link")).unwrap().ino();
    assert_eq!(i1, i2, "hard link not kept");
    assert!(
        fs::symlink_metadata(out.join("docs/fifo"))
            .unwrap()
            .file_type()
            != fs::symlink_metadata(out.join("docs/readme"))
                .unwrap()
                .file_type()
    );
}

#[test]
fn ecp_out_recursive_preserving() {
    let (sc, tree, img) = setup("ecp-out");
    let out = sc.path("out");
    ok(fsu("fsu_ecp", &[s(&img), "-R", "-p", "/", s(&out)]));
    fs::remove_dir_all(out.join("lost+found")).unwrap();
    assert_same_tree(&tree, &out, true);
    // Owners kept (we are root).
    let m = fs::metadata(out.join("docs/readme")).unwrap();
    assert_eq!((m.uid(), m.gid()), (4321, 8765));
    // Into an existing directory: the source keeps its name; -Rp bundled.
    let into = sc.path("into");
    fs::create_dir(&into).unwrap();
    ok(fsu(
        "fsu_ecp",
        &["-Rp", s(&img), "docs", "hello.txt", s(&into)],
    ));
    assert_eq!(
        describe(&into.join("docs"), true),
        describe(&tree.join("docs"), true)
    );
    assert_eq!(fs::read(into.join("hello.txt")).unwrap(), b"hello, world\n");
}

#[test]
fn ecp_out_plain_and_errors() {
    let (sc, tree, img) = setup("ecp-plain");
    // One file to a new name, no -p: content, mode less umask, new mtime.
    let dst = sc.path("copy.bin");
    ok(fsu("fsu_ecp", &[s(&img), "docs/deep/er/leaf.bin", s(&dst)]));
    assert_eq!(
        fs::read(&dst).unwrap(),
        fs::read(tree.join("docs/deep/er/leaf.bin")).unwrap()
    );
    let m = fs::metadata(&dst).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755);
    assert!(m.mtime() > now() - 600, "mtime kept without -p");
    // Overwrite an existing file.
    fs::write(&dst, vec![b'x'; 1_000_000]).unwrap();
    ok(fsu("fsu_ecp", &[s(&img), "hello.txt", s(&dst)]));
    assert_eq!(fs::read(&dst).unwrap(), b"hello, world\n");
    // A symlink stays a symlink; -L copies the target.
    let l = sc.path("l");
    ok(fsu("fsu_ecp", &[s(&img), "short-link", s(&l)]));
    assert_eq!(fs::read_link(&l).unwrap(), Path::new("hello.txt"));
    let l2 = sc.path("l2");
    ok(fsu("fsu_ecp", &[s(&img), "-L", "short-link", s(&l2)]));
    assert_eq!(fs::read(&l2).unwrap(), b"hello, world\n");
    // A directory without -R, a missing source, several sources to a file.
    let o = fsu("fsu_ecp", &[s(&img), "docs", s(&sc.path("d"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("docs: is a directory"),
        "{}",
        text(&o.stderr)
    );
    let o = fsu("fsu_ecp", &[s(&img), "nope", s(&sc.path("d"))]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "fsu_ecp: nope: No such file or directory\n"
    );
    let o = fsu("fsu_ecp", &[s(&img), "hello.txt", "exec.sh", s(&dst)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("Not a directory"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        fsu("fsu_ecp", &[s(&img), "hello.txt"]).status.code(),
        Some(2)
    );
}

#[test]
fn ecp_in_recursive_preserving_then_e2fsck_and_read_back() {
    let (sc, tree, img) = setup("ecp-in");
    // An image from an empty tree, then the tree copied in.
    let empty = sc.path("emptytree");
    fs::create_dir(&empty).unwrap();
    let img2 = sc.path("img2");
    ext2_image(&empty, &img2, &[]);
    ok(fsu(
        "fsu_ecp",
        &[s(&img2), "-i", "-R", "-p", s(&tree), "/copy"],
    ));
    e2fsck_clean(&img2);
    // Listing of the copy equals the listing of the original image.
    let a = ok(fsu("fsu_ls", &[s(&img), "-lAR", "--type", "ext2", "docs"]));
    let b = ok(fsu("fsu_ls", &[s(&img2), "-lAR", "copy/docs"]));
    assert_eq!(
        text(&a).replace("docs", "X"),
        text(&b).replace("copy/docs", "X").replace("docs", "X")
    );
    // Out again: equal to the tree; the kernel reads the same.
    let back = sc.path("back");
    ok(fsu("fsu_ecp", &[s(&img2), "-R", "-p", "copy", s(&back)]));
    assert_same_tree(&tree, &back, true);
    let mnt = LoopMount::new(&img2, &sc.path("mnt"));
    assert_eq!(describe(&tree, true), describe(&mnt.0.join("copy"), true));
    drop(mnt);
    // Single files into an existing directory, and over an existing file.
    ok(fsu(
        "fsu_ecp",
        &[
            "-i",
            s(&img2),
            s(&tree.join("hello.txt")),
            s(&tree.join("exec.sh")),
            "/",
        ],
    ));
    ok(fsu(
        "fsu_ecp",
        &["-i", s(&img2), s(&tree.join("docs/readme")), "/hello.txt"],
    ));
    assert_eq!(
        ok(fsu("fsu_cat", &[s(&img2), "hello.txt"])),
        b"read me\nsecond line\n"
    );
    assert_eq!(
        ok(fsu("fsu_cat", &[s(&img2), "exec.sh"])),
        fs::read(tree.join("exec.sh")).unwrap()
    );
    // Without -p: mode less the umask, owner root (we are root).
    let out = text(&ok(fsu("fsu_ls", &[s(&img2), "-ln", "exec.sh"])));
    assert!(out.starts_with("-rwxr-xr-x 1 0 0 "), "{out}");
    e2fsck_clean(&img2);
}

#[test]
fn write_then_cat() {
    let (_sc, _tree, img) = setup("write");
    ok(fsu_stdin(
        "fsu_write",
        &[s(&img), "/new.txt"],
        Some(b"first\n"),
    ));
    assert_eq!(ok(fsu("fsu_cat", &[s(&img), "new.txt"])), b"first\n");
    ok(fsu_stdin(
        "fsu_write",
        &[s(&img), "-a", "new.txt"],
        Some(b"second\n"),
    ));
    assert_eq!(
        ok(fsu("fsu_cat", &[s(&img), "new.txt"])),
        b"first\nsecond\n"
    );
    // Truncates an existing file, and a big write spans indirect blocks.
    let big = big_content(2_000_000);
    ok(fsu_stdin("fsu_write", &[s(&img), "hello.txt"], Some(&big)));
    assert_eq!(ok(fsu("fsu_cat", &[s(&img), "hello.txt"])), big);
    ok(fsu_stdin(
        "fsu_write",
        &[s(&img), "hello.txt"],
        Some(b"short"),
    ));
    assert_eq!(ok(fsu("fsu_cat", &[s(&img), "docs/hello-link"])), b"short");
    let out = text(&ok(fsu("fsu_ls", &[s(&img), "-l", "new.txt"])));
    assert!(out.starts_with("-rw-r--r-- 1 root root 13 "), "{out}");
    e2fsck_clean(&img);
    let o = fsu_stdin("fsu_write", &[s(&img), "nodir/x"], Some(b"x"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "fsu_write: nodir/x: No such file or directory\n"
    );
    let o = fsu_stdin("fsu_write", &[s(&img), "docs"], Some(b"x"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stderr), "fsu_write: docs: Is a directory\n");
    // -o ro makes it fail and leaves the image as it was.
    let before = fs::read(&img).unwrap();
    let o = fsu_stdin("fsu_write", &["-o", "ro", s(&img), "new.txt"], Some(b"x"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("Read-only file system"),
        "{}",
        text(&o.stderr)
    );
    assert!(fs::read(&img).unwrap() == before);
}

#[test]
fn mkdir_and_rm() {
    let (_sc, _tree, img) = setup("mkdir-rm");
    ok(fsu("fsu_mkdir", &[s(&img), "-p", "a/b/c", "docs/deep"]));
    ok(fsu("fsu_mkdir", &[s(&img), "-m", "700", "private"]));
    ok(fsu(
        "fsu_mkdir",
        &[s(&img), "-m", "u=rwx,go=rx,+t", "sticky"],
    ));
    let out = text(&ok(fsu(
        "fsu_ls",
        &[s(&img), "-ld", "a", "a/b", "a/b/c", "private", "sticky"],
    )));
    let modes: Vec<&str> = out.lines().map(|l| &l[..10]).collect();
    assert_eq!(
        modes,
        [
            "drwxr-xr-x",
            "drwxr-xr-x",
            "drwxr-xr-x",
            "drwx------",
            "drwxr-xr-t"
        ],
        "{out}"
    );
    let o = fsu("fsu_mkdir", &[s(&img), "a"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stderr), "fsu_mkdir: a: File exists\n");
    let o = fsu("fsu_mkdir", &[s(&img), "x/y"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "fsu_mkdir: x/y: No such file or directory\n"
    );
    let o = fsu("fsu_mkdir", &[s(&img), "-p", "hello.txt/z"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        fsu("fsu_mkdir", &[s(&img), "-m", "9", "q"]).status.code(),
        Some(2)
    );
    e2fsck_clean(&img);

    // rm: a directory needs -r; -f quiets missing files.
    let o = fsu("fsu_rm", &[s(&img), "docs"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stderr), "fsu_rm: docs: Is a directory\n");
    ok(fsu("fsu_rm", &[s(&img), "-r", "docs", "a"]));
    ok(fsu("fsu_rm", &[s(&img), "hello.txt", "short-link"]));
    ok(fsu("fsu_rm", &[s(&img), "-f", "nope"]));
    let o = fsu("fsu_rm", &[s(&img), "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stderr), "fsu_rm: nope: No such file or directory\n");
    let o = fsu("fsu_rm", &[s(&img), "-r", "/"]);
    assert_eq!(o.status.code(), Some(1));
    ok(fsu("fsu_rm", &[s(&img), "-d", "private"]));
    let out = text(&ok(fsu("fsu_ls", &[s(&img), "-A"])));
    assert_eq!(
        out,
        ".hidden\ndir-link\nempty\nexec.sh\nlong-link\nlost+found\nsticky\nwith space.txt\n"
    );
    e2fsck_clean(&img);
    // Everything: the free counts come back (e2fsck checks the bitmaps).
    ok(fsu(
        "fsu_rm",
        &[
            s(&img),
            "-rf",
            ".hidden",
            "dir-link",
            "empty",
            "exec.sh",
            "long-link",
            "sticky",
            "with space.txt",
        ],
    ));
    assert_eq!(text(&ok(fsu("fsu_ls", &[s(&img)]))), "lost+found\n");
    e2fsck_clean(&img);
}
