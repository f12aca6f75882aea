//! Stopping on request: SIGTERM (or Ctrl-C) during the backfill stops it at a batch
//! boundary, puts back what the bulk load set aside, says where it stopped in one line and
//! exits non-zero; `up` run again finishes the job.
//!
//! The migration runs in a child process (this test binary again, with `CHILD_URL` set) that
//! listens for signals the way the command does.
#![cfg(feature = "runtime-tokio")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use tests::legacy::{Legacy, LegacySchema};
use tests::{Backend, TestDb, on_every_backend, read, schema};
use uuid::Uuid;

on_every_backend!(a_stop_request_ends_the_backfill_at_a_batch_boundary);

/// Set for the child process: the database it migrates.
const CHILD_URL: &str = "STOP_TEST_CHILD_DATABASE_URL";
const DEPLOYMENTS: u128 = 2_000;

/// Not a test of its own: the child process's entry point, idle unless `CHILD_URL` is set.
#[test]
fn child_process_entry_point() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    tests::migrate_as_child(&url, true);
}

async fn a_stop_request_ends_the_backfill_at_a_batch_boundary(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    let (ws, agent) = (Uuid::from_u128(0x77), Uuid::from_u128(0xa1));
    legacy.workspace(ws).await;
    legacy.agent(agent, Some(ws)).await;
    let entries = format!(r#"[{{"ref": "{agent}"}}]"#);
    for n in 0..DEPLOYMENTS {
        let id = Uuid::from_u128(0xd_0000 + n);
        legacy.deployment(id, Some(ws), None, "{}", &entries).await;
    }
    Migrator::up(&db.conn, Some(2))
        .await
        .expect("the join table");

    let mut child = tests::child_process(CHILD_URL, &db.url)
        .env("MIGRATION_BATCH_SIZE", "5")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the child");
    // Signal once the backfill has committed its first batches.
    let started = Instant::now();
    while read_links(&db).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the backfill never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();

    let links_when_stopped = read_links(&db).await;
    println!(
        "{:?}: stopped after {links_when_stopped} of {DEPLOYMENTS} deployments",
        db.backend
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("stopped on request at a batch boundary"),
        "{stderr}"
    );
    assert!(
        links_when_stopped < DEPLOYMENTS as i64,
        "the backfill ran to the end: {stderr}"
    );
    // Whole batches only, and the join table's keys are back where they were set aside.
    assert_eq!(
        links_when_stopped % 5,
        0,
        "a batch was cut: {links_when_stopped}"
    );
    if db.backend == Backend::Postgres {
        let keys = schema::foreign_keys(&db, "deployment_job_agent").await;
        assert_eq!(keys.len(), 2, "foreign keys put back: {keys:?}");
    }

    Migrator::up(&db.conn, None)
        .await
        .expect("a rerun finishes");
    assert_eq!(read_links(&db).await, DEPLOYMENTS as i64);
}

async fn read_links(db: &TestDb) -> i64 {
    read::count(db, "deployment_job_agent").await
}
