//! House rules that a reviewer would otherwise have to remember.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The names in a manifest's `[dependencies]` section.
fn dependencies(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut in_deps = false;
    let mut names = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
            names.insert(name.to_owned());
        }
    }
    names
}

fn deps_of(dir: &str) -> BTreeSet<String> {
    dependencies(&root().join(dir).join("Cargo.toml"))
}

#[test]
fn the_domain_depends_on_nothing_async_or_io() {
    // Data types only. `smol_str` keeps the ids' text inline (lever 24 in
    // docs/benchmarks.md); with only its `std` feature it pulls in nothing.
    let allowed: BTreeSet<String> = ["chrono", "iso_currency", "rust_decimal", "smol_str", "thiserror", "uuid"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let deps = deps_of("crates/seatledger-domain");
    assert!(
        deps.is_subset(&allowed),
        "the domain may not depend on {:?}",
        deps.difference(&allowed).collect::<Vec<_>>()
    );
}

#[test]
fn dependencies_point_one_way() {
    let forbidden: &[(&str, &[&str])] = &[
        (
            "projections",
            &["seatledger-store", "seatledger-app", "seatledger-codec", "tokio", "seatledger-store-sqlite"],
        ),
        (
            "crates/seatledger-store",
            &["seatledger-domain", "seatledger-codec", "seatledger-projections", "seatledger-app"],
        ),
        (
            "crates/seatledger-store-sqlite",
            &["seatledger-domain", "seatledger-codec", "seatledger-projections", "seatledger-app"],
        ),
        ("crates/seatledger-codec", &["seatledger-store", "seatledger-app", "tokio"]),
        (
            "crates/seatledger-app",
            &["clap", "comfy-table", "indicatif", "tracing-subscriber", "seatledger-store-sqlite"],
        ),
    ];
    for (dir, names) in forbidden {
        let deps = deps_of(dir);
        for name in *names {
            assert!(!deps.contains(*name), "{dir} must not depend on {name}");
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir()
            && !path.ends_with("target")
            && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_test_is_ignored() {
    let mut files = vec![];
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("projections"), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let needle = ["#[", "ignore"].concat();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&needle), "{} ignores a test", file.display());
    }
}

/// mimalloc is built with its `no_thp` feature, so that it never asks the
/// kernel for transparent huge pages: on a host in `madvise` mode each first
/// touch of one zeroes 2 MiB, after compacting memory when none is free, and
/// a replay over many seat pools ran up to 16 % faster without them (lever
/// 27 in docs/benchmarks.md).
#[test]
fn the_allocator_asks_for_no_huge_pages() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = manifest.lines().find(|l| l.trim_start().starts_with("mimalloc")).expect("mimalloc in the workspace");
    assert!(line.contains("\"no_thp\""), "the workspace's mimalloc must keep the no_thp feature: {line}");
}
