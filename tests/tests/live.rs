//! Live writers: while `up` runs, another connection keeps writing legacy rows (new
//! deployments, changed `job_agents` read and rewritten in one transaction, deletions) until
//! the legacy columns are gone. Every write that committed is reflected in the links; no
//! write fails because of the migration (no deadlock, no lock-wait timeout); writes after
//! the drop fail cleanly. Several rounds per run: a race that loses once in a while fails.
#![cfg(feature = "runtime-tokio")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// The writer is going before `up` starts.
const WRITES_BEFORE_UP: usize = 20;

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
    /// Writes that lost a certification conflict and were tried again (Galera only).
    conflicts_retried: usize,
}

tests::on_server_backends!(writes_during_up_are_never_lost);

async fn writes_during_up_are_never_lost(backend: Backend) {
    log_the_migration();
    for round in 0..ROUNDS {
        let db = TestDb::create(backend, &format!("live_writers_{round}")).await;
        let writer = Writer::new(&db.url, false);
        one_round(&db, writer, round).await;
    }
}

/// On a Galera cluster the application writes through another node than the migration's:
/// its writes reach the migration's node only as replicated, certified write sets.
#[cfg(all(feature = "runtime-tokio", feature = "galera"))]
mod galera {
    use super::*;
    use tests::galera::GaleraDb;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_on_another_node_during_up_are_never_lost() {
        log_the_migration();
        // A commit costs a round of certification here: small batches keep the backfill
        // going for as long as the writer needs to land writes in the middle of it.
        migration::settings::Settings {
            batch_size: 10,
            ..Default::default()
        }
        .install();
        for round in 0..ROUNDS {
            let cluster = GaleraDb::create(&format!("galera_live_writers_{round}")).await;
            let writer = Writer::new(&cluster.nodes[1].url, true);
            one_round(cluster.first(), writer, round).await;
            let links = read::links(cluster.first()).await;
            for (n, node) in cluster.nodes.iter().enumerate().skip(1) {
                assert!(
                    read::links(node).await == links,
                    "round {round}: node {} holds other links than node 1",
                    n + 1
                );
            }
        }
    }
}

/// The migration's log goes with a failure's output (the harness keeps it otherwise).
fn log_the_migration() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("migration=debug")
        .try_init();
}

/// Seeds `db`, runs `up` on it while `writer` (on the same database, maybe through another
/// node) keeps writing, and checks that every committed write is linked.
async fn one_round(db: &TestDb, writer: Writer, round: usize) {
    let backend = db.backend;
    let legacy = Legacy::build(db, LegacySchema::HandBuilt).await;
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

    let migrator = Database::connect(&db.url).await.unwrap();
    let going = writer.clone();
    let writer = tokio::spawn(write_until_the_columns_go(writer, backend));
    going.wait_for(WRITES_BEFORE_UP).await;
    Migrator::up(&migrator, None).await.expect("up");
    let report = writer.await.unwrap();
    let during_up = report.writes - WRITES_BEFORE_UP;

    committed.extend(report.committed);
    let mut expected: Vec<LinkRow> = committed
        .iter()
        .filter_map(|(id, last)| {
            last.as_ref()
                .map(|(agent, config)| LinkRow::new(*id, *agent, config.clone()))
        })
        .collect();
    expected.sort_by_key(|link| (link.deployment, link.agent));
    let links = read::links(db).await;
    assert!(
        links == expected,
        "round {round}: after {} concurrent writes, {} links where {} were committed; {}",
        report.writes,
        links.len(),
        expected.len(),
        differences(&links, &expected)
    );
    // An insert or update after the drop names a column that is gone.
    let failure = &report.failure_after_drop;
    assert!(
        ["job_agents", "job_agent_config"]
            .iter()
            .any(|column| failure.contains(&format!("{column}'"))
                || failure.contains(&format!("{column}\""))),
        "writes after the drop must fail for want of the legacy columns: {failure}"
    );
    println!(
        "{backend:?} round {round}: {during_up} writes during up ({} retried after a \
         certification conflict), longest stall {} ms; the first write after the drop: {}",
        report.conflicts_retried,
        report.longest_stall.as_millis(),
        report.failure_after_drop
    );
    assert!(
        during_up >= 10,
        "the writer barely overlapped up: {during_up} writes"
    );
}

/// The first few links missing and unexpected, for the failure message.
fn differences(links: &[LinkRow], expected: &[LinkRow]) -> String {
    let missing: Vec<_> = expected.iter().filter(|l| !links.contains(l)).collect();
    let unexpected: Vec<_> = links.iter().filter(|l| !expected.contains(l)).collect();
    format!(
        "{} missing (first: {:?}), {} unexpected (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(5)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    )
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
/// How the application writes: where, and whether it retries certification conflicts
/// (as applications on Galera must; on a single server the migration must never make a
/// write fail).
#[derive(Clone)]
struct Writer {
    url: String,
    retries_conflicts: bool,
    /// Writes committed so far, for the migration to start only once the writer is going.
    progress: Arc<AtomicUsize>,
}

impl Writer {
    fn new(url: &str, retries_conflicts: bool) -> Writer {
        Writer {
            url: url.to_owned(),
            retries_conflicts,
            progress: Arc::default(),
        }
    }

    /// Waits until the writer has committed `writes` writes.
    async fn wait_for(&self, writes: usize) {
        let started = Instant::now();
        while self.progress.load(Ordering::SeqCst) < writes {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the writer did not get going"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn write_until_the_columns_go(writer: Writer, backend: Backend) -> WriterReport {
    let url = writer.url.clone();
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
        conflicts_retried: 0,
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
                writer.progress.fetch_add(1, Ordering::SeqCst);
                // An update of a deleted row changes nothing; a repeated delete still holds.
                if done.rows_affected() > 0 || effect.1.is_none() {
                    report.committed.insert(effect.0, effect.1);
                }
            }
            // On a multi-master cluster a write that conflicts with one certified first
            // on another node fails with a deadlock error, and applications retry it.
            Err(error) if writer.retries_conflicts && error.to_string().contains("1213") => {
                report.conflicts_retried += 1;
            }
            Err(error) => {
                report.failure_after_drop = format!("{sql}: {error}");
                return report;
            }
        }
    }
    unreachable!()
}
