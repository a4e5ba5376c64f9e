//! fs-utils on FAT images made by mkfs.fat + mcopy -s from a known tree
//! (long names, nested directories): listings, fsu_cat, fsu_ecp both ways
//! (judged by diff -r, fsck.fat -n and mcopy reading back), fsu_write,
//! fsu_mkdir, fsu_rm. Needs dosfstools and mtools.

mod fsu_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use fsu_support::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn setup(tag: &str) -> (Scratch, PathBuf, PathBuf) {
    let sc = Scratch::new(tag);
    let tree = sc.path("tree");
    make_tree(&tree, false);
    let img = sc.path("fat.img");
    fat_image(&tree, &img);
    (sc, tree, img)
}

fn fsck_fat_clean(img: &Path) {
    let o = Command::new("fsck.fat")
        .arg("-n")
        .arg(img)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "fsck.fat -n: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// Content-only description (FAT keeps no Unix modes).
fn contents(root: &Path) -> Vec<String> {
    describe(root, false)
        .into_iter()
        .map(|l| l.split(" mode=").next().unwrap().to_string())
        .collect()
}

#[test]
fn ls_and_cat() {
    let (_sc, tree, img) = setup("fat-ls");
    let out = text(&ok(fsu("fsu_ls", &[s(&img), "-A"])));
    assert_eq!(
        out,
        ".hidden\ndocs\nempty\nexec.sh\nhello.txt\nwith space.txt\n"
    );
    let out = text(&ok(fsu("fsu_ls", &[s(&img), "-R", "docs"])));
    assert_eq!(
        out,
        "docs:\ndeep\nempty-file\nreadme\n\ndocs/deep:\ner\n\ndocs/deep/er:\nleaf.bin\n"
    );
    let out = text(&ok(fsu(
        "fsu_ls",
        &[s(&img), "-lS", "docs/deep/er", "hello.txt"],
    )));
    let sizes: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split_whitespace().nth(4).unwrap().to_string())
        .collect();
    assert_eq!(sizes, ["13", "300000"], "{out}");
    let out = text(&ok(fsu("fsu_ls", &[s(&img), "-F"])));
    assert!(out.contains("docs/\n") && out.contains("empty/\n"), "{out}");
    for f in [
        "hello.txt",
        "docs/deep/er/leaf.bin",
        "with space.txt",
        "docs/empty-file",
        "DOCS/README",
    ] {
        let want = fs::read(tree.join(f.replace("DOCS/README", "docs/readme"))).unwrap();
        assert_eq!(ok(fsu("fsu_cat", &[s(&img), f])), want, "{f}");
    }
    let o = fsu("fsu_cat", &[s(&img), "nope.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "fsu_cat: nope.txt: No such file or directory\n"
    );
}

#[test]
fn ecp_out_and_in() {
    let (sc, tree, img) = setup("fat-ecp");
    let before = fs::read(&img).unwrap();
    let out = sc.path("out");
    ok(fsu("fsu_ecp", &[s(&img), "-R", "-p", "/", s(&out)]));
    assert!(
        fs::read(&img).unwrap() == before,
        "copying out changed the image"
    );
    assert_eq!(contents(&tree), contents(&out));
    sh(Command::new("diff").arg("-r").arg(&tree).arg(&out));
    // Modification times within FAT's 2-second resolution.
    for f in ["hello.txt", "docs/readme", "docs/deep/er/leaf.bin"] {
        let a = fs::metadata(tree.join(f)).unwrap().mtime();
        let b = fs::metadata(out.join(f)).unwrap().mtime();
        assert!((a - b).abs() <= 2, "{f}: {a} vs {b}");
    }

    // Into a fresh image; fsck.fat and mtools agree.
    let empty = sc.path("e");
    fs::create_dir(&empty).unwrap();
    let img2 = sc.path("fat2.img");
    fat_image(&empty, &img2);
    ok(fsu("fsu_ecp", &[s(&img2), "-i", "-R", s(&tree), "/copy"]));
    fsck_fat_clean(&img2);
    let back = sc.path("back");
    fs::create_dir(&back).unwrap();
    sh(Command::new("mcopy")
        .arg("-s")
        .arg("-i")
        .arg(&img2)
        .arg("::/copy")
        .arg(&back));
    assert_eq!(contents(&tree), contents(&back.join("copy")));
    // -p into FAT: times kept; modes it cannot keep are reported.
    let o = fsu(
        "fsu_ecp",
        &[s(&img2), "-i", "-p", s(&tree.join("hello.txt")), "/p.txt"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("p.txt: cannot set mode"),
        "{}",
        text(&o.stderr)
    );
    let out = text(&ok(fsu("fsu_ls", &[s(&img2), "-l", "p.txt"])));
    assert!(out.contains(" Sep 13  2020 p.txt"), "{out}");
    fsck_fat_clean(&img2);
}

#[test]
fn write_mkdir_rm() {
    let (_sc, _tree, img) = setup("fat-write");
    ok(fsu_stdin(
        "fsu_write",
        &[s(&img), "/A Long Name.txt"],
        Some(b"abc"),
    ));
    ok(fsu_stdin(
        "fsu_write",
        &[s(&img), "-a", "a long name.TXT"],
        Some(b"def"),
    ));
    assert_eq!(ok(fsu("fsu_cat", &[s(&img), "A Long Name.txt"])), b"abcdef");
    ok(fsu("fsu_mkdir", &[s(&img), "-p", "one/two/three"]));
    ok(fsu_stdin(
        "fsu_write",
        &[s(&img), "one/two/three/f"],
        Some(&big_content(100_000)),
    ));
    fsck_fat_clean(&img);
    let o = sh(Command::new("mtype")
        .arg("-i")
        .arg(&img)
        .arg("::/A Long Name.txt"));
    assert_eq!(o.stdout, b"abcdef");
    ok(fsu(
        "fsu_rm",
        &[s(&img), "-r", "one", "docs", "A Long Name.txt"],
    ));
    let out = text(&ok(fsu("fsu_ls", &[s(&img)])));
    assert_eq!(out, "empty\nexec.sh\nhello.txt\nwith space.txt\n");
    fsck_fat_clean(&img);
    // A directory needs -r.
    let o = fsu("fsu_rm", &[s(&img), "empty"]);
    assert_eq!(text(&o.stderr), "fsu_rm: empty: Is a directory\n");
}
