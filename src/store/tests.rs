//! The store as a whole: its schema.

#[test]
fn every_migration_file_is_registered_in_order() {
    // A file left out of `MIGRATIONS` never runs: 0018 once was, and its index was never made.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    let registered: Vec<String> = super::MIGRATIONS.iter().map(|(v, d, _)| format!("{v:04}_{d}.sql")).collect();
    assert_eq!(registered, files);
}
