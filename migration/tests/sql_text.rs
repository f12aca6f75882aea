//! Statements without bound values (`execute_unprepared`) appear only in reviewed files,
//! which build them from fixed text and catalogue identifiers, never from row data.
//! Everything else goes through bound values, which `tests/tests/hostile.rs` checks at run
//! time. A new file here needs the same review before it joins the list.

use std::path::Path;

const REVIEWED: [&str; 7] = [
    "src/backfill/bulk_load.rs",
    "src/backfill/capture.rs",
    // The sync triggers: a backend's fixed DDL, filled with names and declared types.
    "src/expand.rs",
    // The legacy columns back: each backend's DDL from the catalogue's declaration.
    "src/retire/mod.rs",
    "src/backends/sqlite/rebuild.rs",
    // Defaults for the retired columns: fixed DDL.
    "src/retire/mysql.rs",
    "src/lib.rs",
];

fn rust_files(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path.display().to_string());
        }
    }
}

#[test]
fn unbound_statements_appear_only_in_reviewed_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    rust_files(&root.join("src"), &mut files);
    let mut unreviewed = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let relative = file
            .strip_prefix(&format!("{}/", root.display()))
            .unwrap()
            .to_owned();
        if text.contains("execute_unprepared(") && !REVIEWED.contains(&relative.as_str()) {
            unreviewed.push(relative);
        }
    }
    assert!(
        unreviewed.is_empty(),
        "unbound statements in unreviewed files: {unreviewed:?}"
    );
}
