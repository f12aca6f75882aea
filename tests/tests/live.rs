//! Live writers: while `up` runs, another connection keeps writing legacy rows (new
//! deployments, changed `job_agents` read and rewritten in one transaction, deletions) until
//! the legacy columns are gone. Every write that committed is reflected in the links; no
//! write fails because of the migration (no deadlock, no lock-wait timeout); writes after
//! the drop fail cleanly. Several rounds per run: a race that loses once in a while fails.
#![cfg(feature = "runtime-tokio")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbErr, ExecResult, Statement, TransactionTrait,
};
use serde_json::{Value as Json, json};
use tests::legacy::{Legacy, LegacySchema};
use tests::read::{self, LinkRow};
use tests::{Backend, TestDb};
use uuid::Uuid;

const SEEDED: u128 = 6_000;
/// Rounds per backend in one run of the suite.
const ROUNDS: usize = 4;
const AGENTS: u128 = 4;

fn agent(n: u128) -> Uuid {
    Uuid::from_u128(0xa0 + n % AGENTS)
}

fn seeded(n: u128) -> Uuid {
    Uuid::from_u128(0x1_0000 + n)
}

fn job_agents(agent: Uuid, config: &Json) -> String {
    json!([{"ref": agent.to_string(), "config": config}]).to_string()
}

/// What the writer committed: each deployment's last `job_agents` entry, or `None` once
/// deleted.
type Committed = BTreeMap<Uuid, Option<(Uuid, Json)>>;

struct WriterReport {
    committed: Committed,
    writes: usize,
    longest_stall: Duration,
    failure_after_drop: String,
}

tests::on_server_backends!(writes_during_up_are_never_lost);

async fn writes_during_up_are_never_lost(backend: Backend) {
    for round in 0..ROUNDS {
        one_round(backend, round).await;
    }
}

async fn one_round(backend: Backend, round: usize) {
    let db = TestDb::create(backend, &format!("live_writers_{round}")).await;
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    let ws = Uuid::from_u128(0x77);
    legacy.workspace(ws).await;
    for n in 0..AGENTS {
        legacy.agent(agent(n), Some(ws)).await;
    }
    let mut committed = Committed::new();
    for n in 0..SEEDED {
        let config = json!({"seed": n as u64});
        legacy
            .deployment(
                seeded(n),
                Some(ws),
                None,
                "{}",
                &job_agents(agent(n), &config),
            )
            .await;
        committed.insert(seeded(n), Some((agent(n), config)));
    }

    let writer = tokio::spawn(write_until_the_columns_go(db.url.clone(), backend));
    let migrator = Database::connect(&db.url).await.unwrap();
    Migrator::up(&migrator, None).await.expect("up");
    let report = writer.await.unwrap();

    committed.extend(report.committed);
    let mut expected: Vec<LinkRow> = committed
        .iter()
        .filter_map(|(id, last)| {
            last.as_ref()
                .map(|(agent, config)| (*id, *agent, config.clone()))
        })
        .collect();
    expected.sort_by_key(|link| (link.0, link.1));
    let links = read::links(&db).await;
    assert_eq!(
        links.len(),
        expected.len(),
        "links after {} concurrent writes",
        report.writes
    );
    assert!(
        links == expected,
        "a committed legacy write is not reflected in the links"
    );
    assert!(
        report.failure_after_drop.contains("job_agent"),
        "writes after the drop must fail cleanly: {}",
        report.failure_after_drop
    );
    println!(
        "{backend:?} round {round}: {} concurrent writes during up, longest stall {} ms",
        report.writes,
        report.longest_stall.as_millis()
    );
    assert!(
        report.writes >= 10,
        "the writer barely overlapped up: {} writes",
        report.writes
    );
}

async fn read_then_write(
    db: &DatabaseConnection,
    backend: Backend,
    id: Uuid,
    write: Statement,
) -> Result<ExecResult, DbErr> {
    let txn = db.begin().await?;
    let id = match backend {
        Backend::Postgres => sea_orm::Value::Uuid(Some(id)),
        _ => id.to_string().into(),
    };
    let read = "SELECT job_agents FROM deployment WHERE id = $1";
    let read = tests::positional_statement(backend, db.get_database_backend(), read, vec![id]);
    txn.query_one_raw(read).await?;
    let done = txn.execute_raw(write).await?;
    txn.commit().await?;
    Ok(done)
}

/// Inserts, updates and deletes legacy rows in turn, as fast as the database lets it, until
/// a write fails because the legacy columns are gone.
async fn write_until_the_columns_go(url: String, backend: Backend) -> WriterReport {
    let db = Database::connect(&url).await.unwrap();
    let json = |n: usize| match backend {
        Backend::Postgres => format!("CAST(${n} AS jsonb)"),
        _ => format!("${n}"),
    };
    let insert = format!(
        "INSERT INTO deployment (id, name, job_agent_config, workspace_id, job_agents) \
         VALUES ($1, 'live', '{{}}', $2, {})",
        json(3)
    );
    let update = format!(
        "UPDATE deployment SET job_agents = {} WHERE id = $2",
        json(1)
    );
    let delete = "DELETE FROM deployment WHERE id = $1".to_owned();
    let text_id = |id: Uuid| -> sea_orm::Value { id.to_string().into() };
    let id_value = |id: Uuid| match backend {
        Backend::Postgres => sea_orm::Value::Uuid(Some(id)),
        _ => text_id(id),
    };

    let mut report = WriterReport {
        committed: Committed::new(),
        writes: 0,
        longest_stall: Duration::ZERO,
        failure_after_drop: String::new(),
    };
    for i in 0u128.. {
        let config = json!({"write": i as u64});
        let (sql, values, effect) = match i % 3 {
            0 => {
                let id = Uuid::from_u128(0x9_0000 + i);
                let values = vec![
                    id_value(id),
                    id_value(Uuid::from_u128(0x77)),
                    job_agents(agent(i), &config).into(),
                ];
                (&insert, values, (id, Some((agent(i), config))))
            }
            1 => {
                let id = seeded((i * 7919) % SEEDED);
                let values = vec![job_agents(agent(i + 1), &config).into(), id_value(id)];
                (&update, values, (id, Some((agent(i + 1), config))))
            }
            _ => {
                let id = seeded((i * 104_729 + 13) % SEEDED);
                (&delete, vec![id_value(id)], (id, None))
            }
        };
        let started = Instant::now();
        let statement =
            tests::positional_statement(backend, db.get_database_backend(), sql, values);
        let result = match i % 3 {
            // Read, then write, in one transaction: the pattern that deadlocks with a
            // migration that upgrades its lock on `deployment` mid-transaction.
            1 => read_then_write(&db, backend, effect.0, statement).await,
            _ => db.execute_raw(statement).await,
        };
        report.longest_stall = report.longest_stall.max(started.elapsed());
        match result {
            Ok(done) => {
                report.writes += 1;
                // An update of a deleted row changes nothing; a repeated delete still holds.
                if done.rows_affected() > 0 || effect.1.is_none() {
                    report.committed.insert(effect.0, effect.1);
                }
            }
            Err(error) => {
                report.failure_after_drop = error.to_string();
                return report;
            }
        }
    }
    unreachable!()
}
