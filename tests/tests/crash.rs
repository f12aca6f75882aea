//! Killed at any point, `up` run again converges to the state an uninterrupted run reaches.
//!
//! The migration runs in a child process built with crash points (`fault-injection`):
//! `MIGRATION_CRASH_AT=k` aborts it, with no cleanup, at the k-th point it reaches. Every k
//! is tried until the child finishes without reaching it.
#![cfg(feature = "runtime-tokio")]

use migration::context::Context;
use migration::{Migrator, MigratorTrait};
use tests::end_state::{EndState, end_state};
use tests::legacy::hand_built_messy;
use tests::read;
use tests::{Backend, TestDb, on_every_backend};

on_every_backend!(
    a_crash_at_any_point_converges_on_rerun,
    a_failure_after_the_last_batch_does_not_walk_the_table_again,
);

/// Set for the child process: the database it migrates.
const CHILD_URL: &str = "CRASH_TEST_CHILD_DATABASE_URL";
const DEPLOYMENTS: u128 = 30;

/// Not a test of its own: the child process's entry point, idle unless `CHILD_URL` is set.
#[test]
fn child_process_entry_point() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    tests::migrate_as_child(&url, false);
}

async fn seeded(backend: Backend, name: &str) -> TestDb {
    let db = TestDb::create(backend, name).await;
    hand_built_messy(&db, DEPLOYMENTS).await;
    db
}

/// The end state of an uninterrupted run on `reference`.
async fn uninterrupted(reference: &TestDb) -> EndState {
    hand_built_messy(reference, DEPLOYMENTS).await;
    Migrator::up(&reference.conn, None)
        .await
        .expect("uninterrupted run");
    end_state(reference).await
}

async fn a_crash_at_any_point_converges_on_rerun(reference: TestDb) {
    let backend = reference.backend;
    let expected = uninterrupted(&reference).await;
    assert!(!expected.links.is_empty() && !expected.rejects.is_empty());

    let mut kill_points = 0;
    for k in 1.. {
        let db = seeded(backend, &format!("crash_{backend:?}_{k}")).await;
        let child = tests::child_process(CHILD_URL, &db.url)
            .env("MIGRATION_CRASH_AT", k.to_string())
            .env("MIGRATION_BATCH_SIZE", "4")
            .output()
            .expect("spawn the child");
        if child.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert!(
            stderr.contains("fault injection: aborting"),
            "child failed otherwise:\n{stderr}"
        );
        kill_points += 1;
        Migrator::up(&db.conn, None)
            .await
            .unwrap_or_else(|e| panic!("rerun after kill point {k}: {e}"));
        assert_eq!(
            end_state(&db).await,
            expected,
            "after kill point {k}: {stderr}"
        );
    }
    println!("{backend:?}: {kill_points} kill points tried, each converged");
    assert!(
        kill_points >= 10,
        "only {kill_points} kill points were reached"
    );
}

/// Killed once every batch is committed, just before the join table gets its keys back (as
/// when a long validation fails at the end of a long step): the rerun walks no deployment
/// again, and ends where an uninterrupted run does.
async fn a_failure_after_the_last_batch_does_not_walk_the_table_again(reference: TestDb) {
    let backend = reference.backend;
    let expected = uninterrupted(&reference).await;
    let db = seeded(backend, &format!("crash_{backend:?}_after_the_load")).await;
    let child = tests::child_process(CHILD_URL, &db.url)
        .env("MIGRATION_CRASH_AT", "backfill: every batch committed")
        .env("MIGRATION_BATCH_SIZE", "4")
        .output()
        .expect("spawn the child");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        stderr.contains("fault injection: aborting"),
        "the child did not stop there:\n{stderr}"
    );
    assert!(
        !read::links(&db).await.is_empty(),
        "the batches are committed"
    );

    let rerun = migration::backfill::backfill_all(&Context::default(), &db.conn)
        .await
        .expect("the backfill again");
    assert_eq!(rerun.deployments, 0, "{rerun:?}");
    Migrator::up(&db.conn, None).await.expect("up again");
    assert_eq!(end_state(&db).await, expected);
}
