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

use migration::Migrator;
use migration::context::Context;
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
    /// Writes that failed otherwise before the drop, by the server's error code (or the
    /// whole message where it has none): the migration must leave none.
    failures: BTreeMap<String, usize>,
    /// The first of them, for the failure message.
    first_failure: String,
}

impl WriterReport {
    fn failures_line(&self) -> String {
        match self.failures.is_empty() {
            true => "none".to_owned(),
            false => format!("{:?}", self.failures),
        }
    }
}

tests::on_server_backends!(writes_during_up_are_never_lost);

async fn writes_during_up_are_never_lost(backend: Backend) {
    log_the_migration();
    for round in 0..ROUNDS {
        let db = TestDb::create(backend, &format!("live_writers_{round}")).await;
        let writer = Writer::new(&db.url, false, 0, 1);
        one_round(&db, vec![writer], round, Context::default()).await;
    }
}

/// On a Galera cluster the application writes through another node than the migration's:
/// its writes reach the migration's node only as replicated, certified write sets.
#[cfg(all(feature = "runtime-tokio", feature = "galera"))]
mod galera {
    use super::*;
    use tests::galera::GaleraDb;

    /// One writer per node, each with statements prepared before `up` starts (sqlx
    /// prepares on the server), the migration on node 1.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_on_every_node_during_up_are_never_lost() {
        log_the_migration();
        // A commit costs a round of certification here: small batches keep the backfill
        // going for as long as the writers need to land writes in the middle of it.
        let context = Context::new(migration::settings::Settings {
            batch_size: 10,
            ..Default::default()
        });
        for round in 0..ROUNDS {
            let cluster = GaleraDb::create(&format!("galera_live_writers_{round}")).await;
            let lanes = cluster.nodes.len() as u128;
            let writers = (cluster.nodes.iter().zip(0..))
                .map(|(node, lane)| Writer::new(&node.url, true, lane, lanes))
                .collect();
            one_round(cluster.first(), writers, round, context.clone()).await;
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

/// Seeds `db`, runs `up` on it while `writers` (on the same database, maybe through other
/// nodes) keep writing, and checks that every committed write is linked and that no write
/// failed but those after the drop.
async fn one_round(db: &TestDb, writers: Vec<Writer>, round: usize, context: Context) {
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
    let going: Vec<Writer> = writers.clone();
    let writers: Vec<_> = (writers.into_iter())
        .map(|writer| tokio::spawn(write_until_the_columns_go(writer, backend)))
        .collect();
    for writer in &going {
        writer.wait_for(WRITES_BEFORE_UP).await;
    }
    let started = Instant::now();
    Migrator::with(context)
        .up(&migrator, None)
        .await
        .expect("up");
    let up_took = started.elapsed();
    let mut reports = vec![];
    for writer in writers {
        reports.push(writer.await.unwrap());
    }
    // Each writer has deployments of its own: their last writes never race each other.
    for report in &reports {
        committed.extend(report.committed.clone());
    }
    let mut expected: Vec<LinkRow> = committed
        .iter()
        .filter_map(|(id, last)| {
            last.as_ref()
                .map(|(agent, config)| LinkRow::new(*id, *agent, config.clone()))
        })
        .collect();
    expected.sort_by_key(|link| (link.deployment, link.agent));
    let links = read::links(db).await;
    let writes: usize = reports.iter().map(|r| r.writes).sum();
    assert!(
        links == expected,
        "round {round}: after {writes} concurrent writes, {} links where {} were committed; {}",
        links.len(),
        expected.len(),
        differences(&links, &expected)
    );
    for (n, report) in reports.iter().enumerate() {
        let during_up = report.writes - WRITES_BEFORE_UP;
        println!(
            "{backend:?} round {round}, writer {}: up took {:.1} s; {during_up} writes during \
             up ({} retried after a certification conflict), failures before the drop: {}, \
             longest stall {} ms; the first write after the drop: {}",
            n + 1,
            up_took.as_secs_f64(),
            report.conflicts_retried,
            report.failures_line(),
            report.longest_stall.as_millis(),
            report.failure_after_drop
        );
        assert!(
            report.failures.is_empty(),
            "round {round}, writer {}: writes failed before the drop: {} (first: {})",
            n + 1,
            report.failures_line(),
            report.first_failure
        );
        // An insert or update after the drop names a column that is gone.
        let failure = &report.failure_after_drop;
        assert!(
            names_a_legacy_column(failure),
            "writes after the drop must fail for want of the legacy columns: {failure}"
        );
        assert!(
            during_up >= 10,
            "writer {} barely overlapped up: {during_up} writes",
            n + 1
        );
    }
}

/// Whether a failed write names a legacy column (the drop has happened).
fn names_a_legacy_column(message: &str) -> bool {
    ["job_agents", "job_agent_config"].iter().any(|column| {
        message.contains(&format!("{column}'")) || message.contains(&format!("{column}\""))
    })
}

/// The server's error code in a message (`1146 (42S02): …`, `error returned from database:
/// 1146`), if it has one.
fn server_code(message: &str) -> Option<String> {
    let after = message.split("error returned from database: ").nth(1)?;
    let code: String = after
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (!code.is_empty()).then_some(code)
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
/// Writers side by side each take one lane of `lanes`: the seeded deployments whose number
/// is `lane` modulo `lanes`, and new ids of their own, so that each deployment's last write
/// is known.
#[derive(Clone)]
struct Writer {
    url: String,
    retries_conflicts: bool,
    lane: u128,
    lanes: u128,
    /// Writes committed so far, for the migration to start only once the writer is going.
    progress: Arc<AtomicUsize>,
}

impl Writer {
    fn new(url: &str, retries_conflicts: bool, lane: u128, lanes: u128) -> Writer {
        Writer {
            url: url.to_owned(),
            retries_conflicts,
            lane,
            lanes,
            progress: Arc::default(),
        }
    }

    /// The `k`th seeded deployment of this writer's lane (any `k`).
    fn seeded(&self, k: u128) -> Uuid {
        seeded((k % (SEEDED / self.lanes)) * self.lanes + self.lane)
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
        failures: BTreeMap::new(),
        first_failure: String::new(),
    };
    for i in 0u128.. {
        let config = json!({"write": i as u64});
        let (sql, values, effect) = match i % 3 {
            0 => {
                let id = Uuid::from_u128(0x9_0000 + (writer.lane << 64) + i);
                let values = vec![
                    id_value(id),
                    id_value(Uuid::from_u128(0x77)),
                    job_agents(agent(i), &config).into(),
                ];
                (&insert, values, (id, Some((agent(i), config))))
            }
            1 => {
                let id = writer.seeded(i * 7919);
                let values = vec![job_agents(agent(i + 1), &config).into(), id_value(id)];
                (&update, values, (id, Some((agent(i + 1), config))))
            }
            _ => {
                let id = writer.seeded(i * 104_729 + 13);
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
            Err(error) if names_a_legacy_column(&error.to_string()) => {
                report.failure_after_drop = format!("{sql}: {error}");
                return report;
            }
            Err(error) => {
                let message = error.to_string();
                let code = server_code(&message).unwrap_or_else(|| message.clone());
                *report.failures.entry(code).or_default() += 1;
                if report.first_failure.is_empty() {
                    report.first_failure = format!("{sql}: {message}");
                }
                // A writer failing at every write would never see the drop.
                assert!(
                    report.failures.values().sum::<usize>() < 10_000,
                    "the writer fails at every write: {}",
                    report.first_failure
                );
            }
        }
    }
    unreachable!()
}
