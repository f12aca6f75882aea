//! A database taken to each step by the migration command as it was before the lifecycle
//! work (commit 08049d6: no migrator lock, no phase record; built by `scripts/prev-layout`,
//! whose binary `PREV_LAYOUT_MIGRATION_BIN` names) is finished by today's `up`, ending where
//! an uninterrupted run of today's does, and taken back all the way by today's `down`.
#![cfg(feature = "runtime-tokio")]

use migration::Migrator;
use migration::context::Context;
use sea_orm::ConnectionTrait;
use tests::end_state::{EndState, end_state};
use tests::legacy::hand_built_messy;
use tests::{Backend, TestDb, on_every_backend, read};

on_every_backend!(a_database_the_previous_layout_migrated_is_finished_and_taken_back);

const DEPLOYMENTS: u128 = 30;
const PREV_BIN: &str = "PREV_LAYOUT_MIGRATION_BIN";

fn migrator() -> migration::Configured {
    Migrator::with(Context::default())
}

/// `up -n steps` by the previous layout's command.
fn previous_layout_up(db: &TestDb, steps: usize) {
    let bin = std::env::var(PREV_BIN).unwrap_or_else(|_| {
        panic!("{PREV_BIN} is not set: build the previous layout with scripts/prev-layout")
    });
    let output = std::process::Command::new(&bin)
        .args(["-u", &db.url, "up", "-n", &steps.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    assert!(
        output.status.success(),
        "the previous layout's up -n {steps}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn seeded(backend: Backend, name: &str) -> TestDb {
    let db = TestDb::create(backend, name).await;
    hand_built_messy(&db, DEPLOYMENTS).await;
    db
}

async fn a_database_the_previous_layout_migrated_is_finished_and_taken_back(reference: TestDb) {
    let backend = reference.backend;
    hand_built_messy(&reference, DEPLOYMENTS).await;
    migrator()
        .up(&reference.conn, None)
        .await
        .expect("today's up");
    let expected: EndState = end_state(&reference).await;
    assert!(!expected.links.is_empty() && !expected.rejects.is_empty());

    for steps in 1..=4 {
        let db = seeded(backend, &format!("layout_{backend:?}_up_{steps}")).await;
        previous_layout_up(&db, steps);
        migrator()
            .up(&db.conn, None)
            .await
            .unwrap_or_else(|e| panic!("today's up after the previous layout's {steps}: {e}"));
        assert_eq!(end_state(&db).await, expected, "after {steps} old steps");
        taken_back(
            &db,
            &format!("after the previous layout's {steps} steps and today's up"),
        )
        .await;

        let db = seeded(backend, &format!("layout_{backend:?}_down_{steps}")).await;
        previous_layout_up(&db, steps);
        taken_back(
            &db,
            &format!("right after the previous layout's {steps} steps"),
        )
        .await;
    }
    println!("{backend:?}: each of the previous layout's 4 steps finished and taken back");
}

/// Today's `down` all the way: the legacy columns back, the join table gone, and every
/// deployment that had links has its `job_agents` again.
async fn taken_back(db: &TestDb, when: &str) {
    migrator()
        .down(&db.conn, None)
        .await
        .unwrap_or_else(|e| panic!("today's down {when}: {e}"));
    let columns = read::columns(db, "deployment").await;
    for legacy in ["job_agents", "job_agent_id", "job_agent_config"] {
        assert!(
            columns.contains(&legacy.to_owned()),
            "{legacy} is back {when}"
        );
    }
    assert!(
        read::columns(db, "deployment_job_agent").await.is_empty(),
        "the join table is gone {when}"
    );
    let empty = db
        .conn
        .query_one_raw(db.statement(
            "SELECT COUNT(*) FROM deployment WHERE job_agents IS NULL",
            vec![],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(empty, 0, "every deployment has job_agents {when}");
}
