//! DESIGN.md's layering rules, enforced on the crate graph and the sources:
//!
//! * a driver crate (`crates/fs-*`) depends directly on rumpkern (and the
//!   host-neutral `log` facade) and on nothing else: no libc, nix, fuser,
//!   rumpuser, p2k, ukfs;
//! * rumpkern does not call the host itself (no libc/nix/fuser dependency);
//! * driver sources name no host API (`std::fs`, `std::os`, `std::net`,
//!   `std::process`, `std::thread`, `SystemTime`, `libc::`, `nix::`).

use std::path::{Path, PathBuf};
use std::process::Command;

const DRIVER_ALLOWED: &[&str] = &["rumpkern", "log"];
const HOST_CRATES: &[&str] = &["libc", "nix", "fuser", "rumpuser", "p2k", "ukfs", "std-fs"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Direct normal and build dependencies of `package`, from `cargo tree`.
fn direct_deps(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", package, "-e", "normal,build", "--depth", "1", "--prefix", "none"])
        .current_dir(root())
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree -p {package} failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_tree(&String::from_utf8_lossy(&out.stdout), package)
}

/// Names from `cargo tree --prefix none --depth 1` output, minus the package itself.
fn parse_tree(text: &str, package: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != package && !n.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Rule violations of one driver's direct dependencies.
fn driver_violations(package: &str, deps: &[String]) -> Vec<String> {
    deps.iter()
        .filter(|d| !DRIVER_ALLOWED.contains(&d.as_str()))
        .map(|d| format!("driver {package} depends on {d} (drivers may depend on {DRIVER_ALLOWED:?} only)"))
        .collect()
}

fn drivers() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("fs-"))
        .collect();
    v.sort();
    v
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
}

/// Host APIs named in a driver source file (test code excluded).
fn host_api_uses(src: &str) -> Vec<String> {
    const FORBIDDEN: &[&str] =
        &["std::fs", "std::os", "std::net", "std::process", "std::thread", "SystemTime", "libc::", "nix::", "fuser::"];
    let body = match src.find("#[cfg(test)]") {
        Some(i) => &src[..i],
        None => src,
    };
    body.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(|l| FORBIDDEN.iter().filter(move |f| l.contains(**f)).map(move |f| format!("{f} in `{}`", l.trim())))
        .collect()
}

#[test]
fn drivers_depend_on_rumpkern_only() {
    let ds = drivers();
    assert!(!ds.is_empty(), "no driver crates found under crates/");
    let mut bad = Vec::new();
    for d in &ds {
        let deps = direct_deps(d);
        assert!(deps.iter().any(|x| x == "rumpkern"), "{d} does not depend on rumpkern: {deps:?}");
        bad.extend(driver_violations(d, &deps));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn rumpkern_reaches_the_host_only_through_rumpuser() {
    let deps = direct_deps("rumpkern");
    for h in ["libc", "nix", "fuser"] {
        assert!(!deps.iter().any(|d| d == h), "rumpkern depends on {h}: {deps:?}");
    }
    assert!(deps.iter().any(|d| d == "rumpuser"));
}

#[test]
fn driver_sources_name_no_host_api() {
    let mut bad = Vec::new();
    for d in drivers() {
        let mut files = Vec::new();
        rust_files(&root().join("crates").join(&d).join("src"), &mut files);
        for f in files {
            let src = std::fs::read_to_string(&f).expect("read source");
            for u in host_api_uses(&src) {
                bad.push(format!("{}: {u}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "host APIs in driver sources:\n{}", bad.join("\n"));
}

/// The checkers themselves catch what they are meant to catch.
#[test]
fn checkers_detect_violations() {
    let tree = "fs-bad v0.1.0 (/x)\nlibc v0.2.1\nrumpkern v0.1.0 (/y)\n";
    let deps = parse_tree(tree, "fs-bad");
    assert_eq!(deps, vec!["libc".to_string(), "rumpkern".to_string()]);
    let v = driver_violations("fs-bad", &deps);
    assert_eq!(v.len(), 1);
    assert!(v[0].contains("libc"));
    assert!(HOST_CRATES.contains(&"fuser"));
    assert_eq!(host_api_uses("use std::fs::File;\n").len(), 1);
    assert!(host_api_uses("// std::fs in a comment\n#[cfg(test)]\nuse std::fs;").is_empty());
}
