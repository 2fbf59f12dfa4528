//! The library's files import each other without cycles: a file-level import graph of src/
//! (every `use` and inline path, re-exports included, test modules left out) built by
//! `tests/support/import_cycles.py` has no strongly connected group of two files or more.

mod common;

use std::process::Command;

use common::root;

#[test]
fn no_two_files_of_the_library_import_each_other_even_indirectly() {
    let out = Command::new("python3")
        .arg(root().join("tests/support/import_cycles.py"))
        .arg(root().join("src"))
        .output()
        .expect("python3 runs tests/support/import_cycles.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text.lines().next().unwrap_or_default();
    // The graph is not empty (the parser found the files and their imports) and has no cycle.
    let files: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(files > 100, "{summary}");
    assert!(
        summary.ends_with(" 0 cycles (strongly connected groups)"),
        "{text}"
    );
}
