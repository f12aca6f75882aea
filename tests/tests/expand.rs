//! The expand phase (migrations 1-3 applied, the drop not yet): a legacy write reaches the
//! links by the backfill's rules, run by the database in the writer's transaction, and a
//! link write reaches the legacy columns.
//!
//! The rules exist twice, in Rust (the backfill) and in each backend's SQL (the triggers),
//! so the differential cases run both on the same generated databases and require the same
//! links and rejects: one specification, checked.
#![cfg(feature = "runtime-tokio")]

use migration::{Migrator, MigratorTrait};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use serde_json::{Value as Json, json};
use service::{AgentAssignment, Mutation, NewDeployment};
use tests::generated::{self, World};
use tests::legacy::{Legacy, LegacySchema};
use tests::read::{LegacyRow, LinkRow};
use tests::{Backend, TestDb, read};
use uuid::Uuid;

/// Fewer than the property suite: each case builds two databases.
const MIN_DEPLOYMENTS: usize = 3_000;

/// The same generated rows, once backfilled (Rust) and once written during the expand phase
/// (SQL): the same links, the same rejects.
async fn both_rule_sets_agree(
    backend: Backend,
    name: String,
    world: World,
) -> Result<(), TestCaseError> {
    let fail = |e: sea_orm::DbErr| TestCaseError::fail(e.to_string());
    let backfilled = TestDb::create(backend, &format!("{name}_b")).await;
    let legacy = Legacy::build(&backfilled, LegacySchema::HandBuilt).await;
    World::write_agents(&legacy).await;
    world.write_deployments(&legacy).await;
    Migrator::up(&backfilled.conn, Some(3))
        .await
        .map_err(fail)?;

    let synced = TestDb::create(backend, &format!("{name}_s")).await;
    let legacy = Legacy::build(&synced, LegacySchema::HandBuilt).await;
    World::write_agents(&legacy).await;
    Migrator::up(&synced.conn, Some(3)).await.map_err(fail)?;
    world.write_deployments(&legacy).await;

    let links = (read::links(&synced).await, read::links(&backfilled).await);
    first_difference("links", &links.0, &links.1, |l| l.deployment)?;
    let rejects = (
        read::rejects(&synced).await,
        read::rejects(&backfilled).await,
    );
    first_difference("rejects", &rejects.0, &rejects.1, |r| r.deployment)?;

    // Updates too: each deployment given the next one's values now has the links the
    // backfill gave the next one.
    world.rotate_deployments(&legacy).await;
    let count = world.deployments.len();
    let index = |id: Uuid| {
        (0..count)
            .find(|&n| generated::deployment_id(n) == id)
            .unwrap()
    };
    let mut rotated: Vec<LinkRow> = links
        .1
        .iter()
        .map(|l| {
            let previous = (index(l.deployment) + count - 1) % count;
            LinkRow::new(
                generated::deployment_id(previous),
                l.agent,
                l.config.clone(),
            )
        })
        .collect();
    rotated.sort_by_key(|l| (l.deployment, l.agent));
    let after = read::links(&synced).await;
    first_difference("links after updates", &after, &rotated, |l| l.deployment)
}

/// Fails with the rows of the first deployment whose rows differ (not the whole tables).
fn first_difference<T: PartialEq + std::fmt::Debug>(
    what: &str,
    by_triggers: &[T],
    by_backfill: &[T],
    deployment: impl Fn(&T) -> Uuid,
) -> Result<(), TestCaseError> {
    let mut deployments: Vec<Uuid> = by_triggers
        .iter()
        .chain(by_backfill)
        .map(&deployment)
        .collect();
    deployments.sort();
    deployments.dedup();
    for id in deployments {
        let of = |rows: &[T]| -> Vec<String> {
            (rows.iter())
                .filter(|row| deployment(row) == id)
                .map(|row| format!("{row:?}"))
                .collect()
        };
        let (left, right) = (of(by_triggers), of(by_backfill));
        prop_assert_eq!(
            &left,
            &right,
            "{} of deployment {}: the triggers (left) and the backfill (right) disagree",
            what,
            id
        );
    }
    Ok(())
}

fn differential(backend: Backend, prefix: &str) {
    generated::run(backend, prefix, MIN_DEPLOYMENTS, both_rule_sets_agree);
}

/// Every deployment's legacy columns are what `down` would write from its links.
async fn legacy_columns_follow_the_links(db: &TestDb, when: &str) {
    let links = read::links(db).await;
    for (deployment, legacy) in read::legacy_rows(db).await {
        assert_eq!(
            legacy,
            LegacyRow::written_by_down(&links, deployment),
            "{when}: deployment {deployment}"
        );
    }
}

fn assignment(agent: Uuid, config: Json) -> AgentAssignment {
    AgentAssignment {
        job_agent_id: agent,
        config,
    }
}

/// Workspace `W`, agents `A1` (of `W`) and `A2`, deployment `D` of `W`.
const W: Uuid = Uuid::from_u128(0x100);
const A1: Uuid = Uuid::from_u128(0xa1);
const A2: Uuid = Uuid::from_u128(0xa2);
const D: Uuid = Uuid::from_u128(0xd1);

/// The baseline's tables with `W`, `A1`, `A2` (of `a2_workspace`) and `D` holding
/// `job_agents`, then migrated up to the expand phase.
async fn expand_phase_of<'a>(
    db: &'a TestDb,
    a2_workspace: Option<Uuid>,
    job_agents: &str,
) -> Legacy<'a> {
    let legacy = Legacy::build(db, LegacySchema::Baseline).await;
    legacy.workspace(W).await;
    legacy.agent(A1, Some(W)).await;
    legacy.agent(A2, a2_workspace).await;
    legacy.deployment(D, Some(W), None, "{}", job_agents).await;
    let installed = async || migration::expand::installed(&db.conn).await.unwrap();
    assert!(!installed().await, "the sync before the backfill");
    // The baseline is applied: two more, the join table and the backfill.
    Migrator::up(&db.conn, Some(2))
        .await
        .expect("up to the expand phase");
    assert!(installed().await, "no sync after the backfill");
    legacy
}

/// What the new version does through `service` (and plain SQL) reaches the legacy columns
/// in the same transaction, and writes no reject: the old version reads exactly the links.
async fn link_writes_reach_the_legacy_columns(db: TestDb) {
    let (w, a1, a2, d) = (W, A1, A2, D);
    expand_phase_of(&db, Some(W), &json!([A1.to_string()]).to_string()).await;
    let rejects = read::count(&db, "deployment_job_agent_backfill_reject").await;

    Mutation::attach_job_agent(&db.conn, d, assignment(a2, json!({"ns": "prod"})))
        .await
        .expect("attach");
    legacy_columns_follow_the_links(&db, "after attach").await;
    assert_eq!(read::links(&db).await.len(), 2);

    Mutation::detach_job_agent(&db.conn, d, a1)
        .await
        .expect("detach");
    legacy_columns_follow_the_links(&db, "after detach").await;

    let set = vec![assignment(a1, json!({"n": 1})), assignment(a2, json!({}))];
    Mutation::replace_job_agents(&db.conn, d, set)
        .await
        .expect("replace");
    legacy_columns_follow_the_links(&db, "after replace").await;

    let config = match db.backend {
        Backend::Postgres => "UPDATE deployment_job_agent SET config = CAST($1 AS jsonb)",
        _ => "UPDATE deployment_job_agent SET config = $1",
    };
    db.exec(config, vec![r#"{"plain": "sql"}"#.into()]).await;
    legacy_columns_follow_the_links(&db, "after a config update in plain SQL").await;

    // A deployment created by the new version, without the legacy columns.
    let new = NewDeployment {
        name: "created by the new version".into(),
        resource_selector: None,
        workspace_id: Some(w),
    };
    let created = Mutation::create_deployment(&db.conn, new, vec![assignment(a2, json!({}))]).await;
    if db.backend == Backend::Sqlite {
        // SQLite cannot give the NOT NULL legacy columns a default without copying the table,
        // nor can its triggers fill them (README, the expand phase).
        let error = created.expect_err("SQLite refuses a deployment without job_agents");
        assert!(error.to_string().contains("NOT NULL"), "{error}");
    } else {
        let created = created.expect("the new version creates deployments during the expand phase");
        legacy_columns_follow_the_links(&db, "after create").await;
        let links = read::links(&db).await;
        let of_created = links
            .iter()
            .filter(|l| l.deployment == created.deployment.id);
        assert_eq!(of_created.count(), 1);
    }
    assert_eq!(
        read::count(&db, "deployment_job_agent_backfill_reject").await,
        rejects,
        "the sync recorded rejects for its own writes"
    );
}

/// What the old version writes reaches the links at once, by the rules.
async fn legacy_writes_reach_the_links(db: TestDb) {
    let (w, a1, a2, d) = (W, A1, A2, D);
    let legacy = expand_phase_of(&db, None, "[]").await;
    let set_agents = match db.backend {
        Backend::Postgres => "UPDATE deployment SET job_agents = CAST($1 AS jsonb) WHERE id = $2",
        _ => "UPDATE deployment SET job_agents = $1 WHERE id = $2",
    };
    let entries = json!([{"ref": a2.to_string().to_uppercase(), "config": {"k": "v"}}, "nope"]);
    db.exec(set_agents, vec![entries.to_string().into(), legacy.id(d)])
        .await;
    assert_eq!(
        read::links(&db).await,
        vec![LinkRow::new(d, a2, json!({"k": "v"}))]
    );
    let rejects = read::rejects(&db).await;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(
        (rejects[0].index, rejects[0].reason.as_str()),
        (Some(1), "invalid_ref")
    );

    let d2 = Uuid::from_u128(0xd2);
    legacy
        .deployment(d2, Some(w), Some(a1), r#"{"x": 1}"#, "[]")
        .await;
    let expected = vec![
        LinkRow::new(d, a2, json!({"k": "v"})),
        LinkRow::new(d2, a1, json!({"x": 1})),
    ];
    assert_eq!(read::links(&db).await, expected);

    db.exec("DELETE FROM deployment WHERE id = $1", vec![legacy.id(d)])
        .await;
    assert_eq!(
        read::links(&db).await,
        vec![LinkRow::new(d2, a1, json!({"x": 1}))]
    );
}

/// MariaDB ends a statement that loses a deadlock without running its triggers' exit
/// handlers, so the guard a trigger set (the sync's own writes are not synced back) is left
/// in the session: it must not keep the sync off for that session's next writes.
async fn a_legacy_write_that_loses_a_deadlock_leaves_the_sync_on(db: TestDb) {
    let d = D;
    let legacy = expand_phase_of(&db, Some(W), &json!([A1.to_string()]).to_string()).await;
    let others: Vec<Uuid> = (0..4).map(|n| Uuid::from_u128(0xe0 + n)).collect();
    for other in &others {
        legacy.deployment(*other, Some(W), None, "{}", "[]").await;
    }
    // The old version's session, one connection, so the write after the deadlock is its.
    let mut options = ConnectOptions::new(db.url.clone());
    options.max_connections(1);
    let old_version = Database::connect(options).await.unwrap();
    let id = Statement::from_string(DbBackend::MySql, "SELECT CAST(CONNECTION_ID() AS SIGNED)");
    let row = old_version.query_one_raw(id).await.unwrap().unwrap();
    let session: i64 = row.try_get_by_index(0).unwrap();
    let set_agents = |agent: Uuid| {
        let job_agents = json!([agent.to_string()]).to_string();
        legacy.legacy_write(d, None, "{}", &job_agents)
    };

    // Another session changes four deployments and locks D's links; the old version's
    // write of D then waits inside its trigger, and the other session's write of D closes
    // the cycle (once the old version's write has waited a while: it can wait for nothing
    // else). The old version's transaction is the lighter one: MariaDB rolls it back.
    let other = db.conn.begin().await.unwrap();
    let rename = "UPDATE deployment SET name = 'renamed' WHERE id = $1";
    for id in &others {
        let rename = db.statement(rename, vec![legacy.id(*id)]);
        other.execute_raw(rename).await.unwrap();
    }
    let lock = "SELECT job_agent_id FROM deployment_job_agent WHERE deployment_id = $1 FOR UPDATE";
    other
        .query_all_raw(db.statement(lock, vec![legacy.id(d)]))
        .await
        .unwrap();
    let waiting = {
        let (conn, write) = (old_version.clone(), set_agents(A2));
        tokio::spawn(async move { conn.execute_raw(write).await })
    };
    wait_until_it_waits(&db, session).await;
    let touch = "UPDATE deployment SET name = 'touched' WHERE id = $1";
    other
        .execute_raw(db.statement(touch, vec![legacy.id(d)]))
        .await
        .unwrap();
    other.commit().await.unwrap();
    let lost = waiting
        .await
        .unwrap()
        .expect_err("the old version's write loses the deadlock");
    assert!(lost.to_string().contains("1213"), "{lost}");

    old_version
        .execute_raw(set_agents(A2))
        .await
        .expect("the write again");
    assert_eq!(
        read::links(&db).await,
        vec![LinkRow::new(d, A2, json!({}))],
        "the old version's next write did not reach the links"
    );
}

/// Waits (at most a minute) until MariaDB session `id` has been running one statement for
/// 300 ms: a statement that takes so long here is waiting for a lock.
async fn wait_until_it_waits(db: &TestDb, id: i64) {
    let started = std::time::Instant::now();
    let sql = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
               WHERE ID = $1 AND COMMAND <> 'Sleep' AND TIME_MS >= 300";
    loop {
        let statement = db.statement(sql, vec![id.into()]);
        let row = db.conn.query_one_raw(statement).await.unwrap();
        let waiting: i64 = row.unwrap().try_get_by_index(0).unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the old version's write never waited for the other session's lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

mod postgres {
    #[test]
    fn the_triggers_and_the_backfill_make_the_same_links_and_rejects() {
        super::differential(super::Backend::Postgres, "pg_expand_diff");
    }

    #[tokio::test]
    async fn link_writes_reach_the_legacy_columns() {
        let db = super::TestDb::create(super::Backend::Postgres, "pg_expand_links").await;
        super::link_writes_reach_the_legacy_columns(db).await;
    }

    #[tokio::test]
    async fn legacy_writes_reach_the_links() {
        let db = super::TestDb::create(super::Backend::Postgres, "pg_expand_legacy").await;
        super::legacy_writes_reach_the_links(db).await;
    }
}

mod mariadb {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_legacy_write_that_loses_a_deadlock_leaves_the_sync_on() {
        let db = super::TestDb::create(super::Backend::MariaDb, "my_expand_deadlock").await;
        super::a_legacy_write_that_loses_a_deadlock_leaves_the_sync_on(db).await;
    }

    #[test]
    fn the_triggers_and_the_backfill_make_the_same_links_and_rejects() {
        super::differential(super::Backend::MariaDb, "my_expand_diff");
    }

    #[tokio::test]
    async fn link_writes_reach_the_legacy_columns() {
        let db = super::TestDb::create(super::Backend::MariaDb, "my_expand_links").await;
        super::link_writes_reach_the_legacy_columns(db).await;
    }

    #[tokio::test]
    async fn legacy_writes_reach_the_links() {
        let db = super::TestDb::create(super::Backend::MariaDb, "my_expand_legacy").await;
        super::legacy_writes_reach_the_links(db).await;
    }
}

mod sqlite {
    #[test]
    fn the_triggers_and_the_backfill_make_the_same_links_and_rejects() {
        super::differential(super::Backend::Sqlite, "lite_expand_diff");
    }

    #[tokio::test]
    async fn link_writes_reach_the_legacy_columns() {
        let db = super::TestDb::create(super::Backend::Sqlite, "lite_expand_links").await;
        super::link_writes_reach_the_legacy_columns(db).await;
    }

    #[tokio::test]
    async fn legacy_writes_reach_the_links() {
        let db = super::TestDb::create(super::Backend::Sqlite, "lite_expand_legacy").await;
        super::legacy_writes_reach_the_links(db).await;
    }
}
