//! The phase record says where a database is: each step begun and ended by which migrator,
//! how far a killed backfill got, and, for a database migrated before the record existed, what
//! `seaql_migrations` says, from which the migrations go on and come back.
#![cfg(feature = "runtime-tokio")]

use migration::Migrator;
use migration::context::Context;
use migration::phase::{self, Phase};
use tests::legacy::hand_built_messy;
use tests::{MIGRATIONS, TestDb, on_every_backend, read};

on_every_backend!(
    a_killed_backfill_is_recorded_running_with_how_far_it_got,
    a_database_migrated_before_the_record_is_recognised_at_every_step,
);

/// Set for the child process: the database it migrates.
const CHILD_URL: &str = "PHASE_TEST_CHILD_DATABASE_URL";
const DEPLOYMENTS: u128 = 30;

/// Not a test of its own: the child process's entry point, idle unless `CHILD_URL` is set.
#[test]
fn child_process_entry_point() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    tests::migrate_as_child(&url, false);
}

fn migrator() -> migration::Configured {
    Migrator::with(Context::default())
}

/// The one row, for `deployment`.
async fn the_phase(db: &TestDb) -> Phase {
    let phases = phase::read(&db.conn).await.expect("the phase record");
    assert_eq!(phases.len(), 1, "one row, for deployment: {phases:?}");
    assert_eq!(phases[0].table, "deployment");
    phases[0].clone()
}

async fn a_killed_backfill_is_recorded_running_with_how_far_it_got(db: TestDb) {
    hand_built_messy(&db, DEPLOYMENTS).await;
    migrator().up(&db.conn, Some(2)).await.expect("join table");
    let done = the_phase(&db).await;
    assert_eq!(
        (
            done.step.as_str(),
            done.direction.as_str(),
            done.state.as_str()
        ),
        (MIGRATIONS[1], "up", "done")
    );
    assert_eq!(done.pid, Some(i64::from(std::process::id())));
    assert!(done.host.is_some() && done.started_at.is_some() && done.finished_at.is_some());

    // Killed (no cleanup) after its second batch committed.
    let child = tests::child_process(CHILD_URL, &db.url)
        .env("MIGRATION_CRASH_AT", "backfill: batch committed")
        .env("MIGRATION_BATCH_SIZE", "4")
        .spawn()
        .expect("spawn the child");
    let child_pid = i64::from(child.id());
    let output = child.wait_with_output().expect("the child ends");
    assert!(!output.status.success(), "the child was killed");

    let killed = the_phase(&db).await;
    println!("{:?} after the kill: {killed}", db.backend);
    assert_eq!(
        (
            killed.step.as_str(),
            killed.direction.as_str(),
            killed.state.as_str()
        ),
        (MIGRATIONS[2], "up", "running"),
        "{killed}"
    );
    assert_eq!(killed.pid, Some(child_pid), "the child began the step");
    assert_eq!(killed.finished_at, None);
    let progress = killed
        .progress
        .expect("the first batch recorded how far it got");
    assert!(
        progress.starts_with("backfill: walked up to deployment "),
        "{progress}"
    );
    let links = read::count(&db, "deployment_job_agent").await;
    assert!(links > 0, "the batch that recorded it committed its links");

    migrator().up(&db.conn, None).await.expect("the rerun");
    let finished = the_phase(&db).await;
    assert_eq!(
        (finished.step.as_str(), finished.state.as_str()),
        (MIGRATIONS[3], "done")
    );
    assert_eq!(finished.progress, None);
    migrator().down(&db.conn, Some(1)).await.expect("down");
    let back = the_phase(&db).await;
    assert_eq!(
        (
            back.step.as_str(),
            back.direction.as_str(),
            back.state.as_str()
        ),
        (MIGRATIONS[3], "down", "done")
    );
}

/// A database taken to each step by migrators that kept no phase record (the record's table
/// dropped, as before it existed): the next run records where `seaql_migrations` says it is,
/// `up` finishes the job and `down` takes it all the way back.
async fn a_database_migrated_before_the_record_is_recognised_at_every_step(db: TestDb) {
    let backend = db.backend;
    for (applied, step) in (1..).zip(MIGRATIONS) {
        let db = TestDb::create(backend, &format!("phase_{backend:?}_{applied}")).await;
        hand_built_messy(&db, DEPLOYMENTS).await;
        migrator()
            .up(&db.conn, Some(applied))
            .await
            .expect("up to the step");
        db.exec("DROP TABLE deployment_job_agent_phase", vec![])
            .await;
        assert!(phase::read(&db.conn).await.unwrap().is_empty());

        // A run that applies nothing still recognises where the database is.
        migrator().up(&db.conn, Some(0)).await.expect("up 0");
        let recovered = the_phase(&db).await;
        assert_eq!(
            (recovered.step.as_str(), recovered.state.as_str()),
            (step, "done"),
            "after {applied} applied"
        );
        assert_eq!((recovered.host, recovered.pid), (None, None));

        migrator().up(&db.conn, None).await.expect("up finishes");
        assert!(
            !read::columns(&db, "deployment")
                .await
                .contains(&"job_agents".to_owned())
        );
        migrator().down(&db.conn, None).await.expect("down all");
        assert!(
            read::columns(&db, "deployment")
                .await
                .contains(&"job_agents".to_owned())
        );
        assert!(read::columns(&db, "deployment_job_agent").await.is_empty());
        let back = the_phase(&db).await;
        assert_eq!(
            (
                back.step.as_str(),
                back.direction.as_str(),
                back.state.as_str()
            ),
            (MIGRATIONS[0], "down", "done")
        );
    }
}
