//! Joins the guest runtime's parts into the one source `sandbox_core::guest::RUNTIME_SOURCE`
//! embeds (`$OUT_DIR/runtime.py`).
//!
//! The parts are the `.py` files of `guest/runtime/`, joined in the order `guest/runtime/ORDER`
//! lists them, two blank lines between each pair: one module, one namespace, so sessions
//! load exactly what they loaded when the runtime was one file. `guest/join_runtime.py` joins
//! them the same way for the Python tests; a unit test in `guest.rs` checks the two agree.

#![allow(
    clippy::print_stdout,
    reason = "a build script talks to cargo on stdout"
)]

use std::path::Path;
use std::{env, fs};

/// Where the parts and their `ORDER` live, relative to the package root.
const PARTS_DIR: &str = "guest/runtime";
/// Between two parts: each part ends with one newline, so this makes two blank lines.
const SEPARATOR: &str = "\n\n";

fn main() {
    let dir = Path::new(PARTS_DIR);
    let order_path = dir.join("ORDER");
    // The folder too, so a part added without being listed fails the build at once.
    println!("cargo:rerun-if-changed={PARTS_DIR}");
    println!("cargo:rerun-if-changed={}", order_path.display());
    let names = part_names(&read(&order_path));
    check_every_part_is_listed_once(dir, &names);
    let mut parts = Vec::with_capacity(names.len());
    for name in &names {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        parts.push(read(&path));
    }
    let out = Path::new(&env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("runtime.py");
    fs::write(&out, parts.join(SEPARATOR))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// The part file names `ORDER` lists, in order (empty lines and `#` lines skipped).
fn part_names(order: &str) -> Vec<String> {
    order
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Fails the build unless `names` are exactly the `.py` files in `dir`, each once.
fn check_every_part_is_listed_once(dir: &Path, names: &[String]) {
    let mut present: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| Path::new(name).extension().is_some_and(|ext| ext == "py"))
        .collect();
    present.sort();
    let mut listed = names.to_vec();
    listed.sort();
    let unique = listed.windows(2).all(|pair| pair[0] != pair[1]);
    assert!(
        unique && listed == present,
        "{}/ORDER must list each .py file there once: lists {names:?}, found {present:?}",
        dir.display()
    );
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
