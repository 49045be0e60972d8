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

#[tokio::test]
async fn a_customer_user_with_no_customers_sees_nothing_rather_than_all() {
    use crate::access::Role;
    let dir = tempfile::tempdir().unwrap();
    let s = super::Store::open(&dir.path().join("a.db")).await.unwrap();
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    // Made past the checks, as a hand edit of the database would.
    let id = s.add_user("cat", Role::Customer, &[], None, now).await.unwrap().unwrap();
    s.add_token(id, super::API_TOKEN, "t", "hash-of-cat", now, None).await.unwrap();
    assert!(s.principal("hash-of-cat", now).await.unwrap().is_none());
    let id = s.add_user("dee", Role::Desk, &[], None, now).await.unwrap().unwrap();
    s.add_token(id, super::API_TOKEN, "t", "hash-of-dee", now, None).await.unwrap();
    assert!(s.principal("hash-of-dee", now).await.unwrap().is_some());
    // Disabling revokes for good: enabling again brings no token back.
    assert!(s.set_disabled("dee", true, now).await.unwrap());
    assert!(s.set_disabled("dee", false, now).await.unwrap());
    assert!(s.principal("hash-of-dee", now).await.unwrap().is_none());
}
