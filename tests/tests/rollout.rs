//! A rolling deploy: during the expand phase the old application version (which writes the
//! legacy columns in plain SQL) and the new one (which writes the links through `service`)
//! write the same deployments at once, each on its own connection. Afterwards every
//! deployment holds, in both shapes, exactly the last write committed to it by either side.
//!
//! "Last" is judged by real time, which needs no clock in the database: a write that began
//! after another had committed committed after it. So the final state must be the state of
//! a write that no other write to the same deployment began after; the check accepts any of
//! those (concurrent writes may commit in either order) and nothing else.
#![cfg(feature = "runtime-tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value as Json, json};
use service::{AgentAssignment, Mutation};
use tests::legacy::{Legacy, LegacySchema};
use tests::read::{LegacyRow, LinkRow};
use tests::{Backend, TestDb, on_every_backend_at_once, read};
use uuid::Uuid;

/// How long the two versions write side by side.
const SIDE_BY_SIDE: Duration = Duration::from_secs(3);
const DEPLOYMENTS: u128 = 5;
const AGENTS: u128 = 4;
const WORKSPACE: Uuid = Uuid::from_u128(0x5000);

fn deployment(n: u128) -> Uuid {
    Uuid::from_u128(0xd000 + n % DEPLOYMENTS)
}

fn agent(n: u128) -> Uuid {
    Uuid::from_u128(0xa000 + n % AGENTS)
}

/// Which application version made a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Old,
    New,
}

/// A deployment in both shapes.
#[derive(Clone, Debug, PartialEq)]
struct Shapes {
    links: Vec<LinkRow>,
    legacy: LegacyRow,
}

/// One committed write and when: it began after `began` and had committed by `committed`.
#[derive(Clone, Debug)]
struct Write {
    by: Version,
    deployment: Uuid,
    began: Instant,
    committed: Instant,
    /// The deployment's shapes right after it.
    shapes: Shapes,
}

/// One application version writing until told to stop, on a connection of its own.
struct Running {
    progress: Arc<Progress>,
    task: tokio::task::JoinHandle<Report>,
}

/// How many writes a running version has committed, and whether it should stop.
#[derive(Default)]
struct Progress {
    writes: AtomicUsize,
    stop: AtomicBool,
}

impl Running {
    fn start(version: Version, db: &Arc<TestDb>) -> Running {
        let progress = Arc::new(Progress::default());
        let task = tokio::spawn(keep_writing(version, db.clone(), progress.clone()));
        Running { progress, task }
    }

    fn writes(&self) -> usize {
        self.progress.writes.load(Ordering::SeqCst)
    }

    /// Waits until this version has committed `writes` writes.
    async fn wait_for(&self, writes: usize) {
        let started = Instant::now();
        while self.writes() < writes {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the writer did not get going"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> Report {
        self.progress.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the writer panicked")
    }
}

/// What one side did.
#[derive(Debug, Default)]
struct Report {
    writes: Vec<Write>,
    /// Writes that lost a deadlock or a serialization check (or found SQLite busy) and were
    /// made again.
    retried: usize,
}

/// The old version's `n`th write: the legacy columns as it writes them, and the links the
/// rules give them. Every value is valid, so no reject is due.
fn old_write(deployment: Uuid, n: u128) -> (Option<Uuid>, Json, Json, Vec<LinkRow>) {
    let config = json!({"old": n as u64});
    match n % 3 {
        // The single-agent columns.
        0 => {
            let links = vec![LinkRow::new(deployment, agent(n), config.clone())];
            (Some(agent(n)), config, json!([]), links)
        }
        // Two entries, one reference shouted, one a bare string (config `{}`).
        1 => {
            let (first, second) = (agent(n), agent(n + 1));
            let job_agents = json!([
                {"ref": first.to_string().to_uppercase(), "config": config},
                second.to_string(),
            ]);
            let mut links = vec![
                LinkRow::new(deployment, first, config),
                LinkRow::new(deployment, second, json!({})),
            ];
            links.sort_by_key(|l| l.agent);
            (None, json!({}), job_agents, links)
        }
        // No agent at all.
        _ => (None, json!({}), json!([]), vec![]),
    }
}

/// The new version's `n`th write: `n % 3` agents, each with a config naming the write.
fn new_write(deployment: Uuid, n: u128) -> Vec<LinkRow> {
    let mut links: Vec<LinkRow> = (0..n % 3)
        .map(|k| {
            LinkRow::new(
                deployment,
                agent(n + k),
                json!({"new": n as u64, "k": k as u64}),
            )
        })
        .collect();
    links.sort_by_key(|l| l.agent);
    links
}

/// Whether a write failed only because it met the other side's concurrent write: the
/// writer makes it again.
fn must_retry(error: &str) -> bool {
    [
        "deadlock",
        "could not serialize",
        "1213",
        "database is locked",
        "(code: 5)",
    ]
    .iter()
    .any(|sign| error.contains(sign))
}

/// An application version's connection, and what it needs to make its writes.
enum Side {
    Old {
        db: Arc<TestDb>,
        conn: DatabaseConnection,
    },
    New {
        conn: DatabaseConnection,
    },
}

impl Side {
    async fn connect(version: Version, db: Arc<TestDb>) -> Side {
        let conn = Database::connect(&db.url)
            .await
            .expect("a version connects");
        match version {
            Version::Old => Side::Old { db, conn },
            Version::New => Side::New { conn },
        }
    }

    fn version(&self) -> Version {
        match self {
            Side::Old { .. } => Version::Old,
            Side::New { .. } => Version::New,
        }
    }

    /// This version's `n`th write: the deployment it wrote, and its shapes after it.
    async fn write(&self, n: u128) -> Result<(Uuid, Shapes), String> {
        match self {
            Side::Old { db, conn } => {
                let id = deployment(n * 3);
                let (job_agent_id, config, job_agents, links) = old_write(id, n);
                let legacy = Legacy {
                    db,
                    schema: LegacySchema::Baseline,
                };
                let (config_text, agents_text) = (config.to_string(), job_agents.to_string());
                let write = legacy.legacy_write(id, job_agent_id, &config_text, &agents_text);
                conn.execute_raw(write).await.map_err(|e| e.to_string())?;
                let legacy = LegacyRow {
                    job_agents: Some(job_agents),
                    job_agent_id,
                    job_agent_config: Some(config),
                };
                Ok((id, Shapes { links, legacy }))
            }
            Side::New { conn } => {
                let id = deployment(n * 2);
                let links = new_write(id, n);
                let set = (links.iter())
                    .map(|l| AgentAssignment {
                        job_agent_id: l.agent,
                        config: l.config.clone(),
                    })
                    .collect();
                let replaced = Mutation::replace_job_agents(conn, id, set).await;
                replaced.map_err(|e| e.to_string())?;
                let legacy = LegacyRow::written_by_down(&links, id);
                Ok((id, Shapes { links, legacy }))
            }
        }
    }
}

/// Makes `version`'s writes until told to stop: each committed one recorded with when it
/// began and when it had committed, each lost to a concurrent write made again.
async fn keep_writing(version: Version, db: Arc<TestDb>, progress: Arc<Progress>) -> Report {
    let side = Side::connect(version, db).await;
    let mut report = Report::default();
    let mut n = 0u128;
    while !progress.stop.load(Ordering::SeqCst) {
        let began = Instant::now();
        match side.write(n).await {
            Ok((deployment, shapes)) => {
                report.writes.push(Write {
                    by: side.version(),
                    deployment,
                    began,
                    committed: Instant::now(),
                    shapes,
                });
                n += 1;
                progress.writes.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) if must_retry(&error) => report.retried += 1,
            Err(error) => panic!("the {version:?} version's write {n} failed: {error}"),
        }
    }
    report
}

/// The writes to `deployment` that may have committed last: those no other write to it
/// began after.
fn last_candidates<'w>(writes: &[&'w Write], deployment: Uuid) -> Vec<&'w Write> {
    let mine: Vec<&Write> = (writes.iter())
        .filter(|w| w.deployment == deployment)
        .copied()
        .collect();
    (mine.iter())
        .filter(|w| !mine.iter().any(|other| other.began > w.committed))
        .copied()
        .collect()
}

async fn shapes_of(db: &TestDb) -> Vec<(Uuid, Shapes)> {
    let links = read::links(db).await;
    (read::legacy_rows(db).await.into_iter())
        .map(|(id, legacy)| {
            let links = links
                .iter()
                .filter(|l| l.deployment == id)
                .cloned()
                .collect();
            (id, Shapes { links, legacy })
        })
        .collect()
}

/// Agents and deployments of one workspace, the deployments each linked to one agent.
async fn seed(db: &TestDb) {
    let legacy = Legacy::build(db, LegacySchema::Baseline).await;
    legacy.workspace(WORKSPACE).await;
    for n in 0..AGENTS {
        legacy.agent(agent(n), Some(WORKSPACE)).await;
    }
    for n in 0..DEPLOYMENTS {
        let job_agents = json!([agent(n).to_string()]).to_string();
        (legacy.deployment(deployment(n), Some(WORKSPACE), None, "{}", &job_agents)).await;
    }
}

/// Every deployment whose shapes are not those of a write that may have committed last.
async fn disagreements(db: &TestDb, reports: &[&Report]) -> Vec<String> {
    let writes: Vec<&Write> = reports.iter().flat_map(|r| &r.writes).collect();
    let finals = shapes_of(db).await;
    assert_eq!(finals.len(), DEPLOYMENTS as usize);
    let mut found_wrong = vec![];
    for (id, found) in &finals {
        let candidates = last_candidates(&writes, *id);
        assert!(!candidates.is_empty(), "no write reached deployment {id}");
        if !candidates.iter().any(|w| &w.shapes == found) {
            found_wrong.push(format!(
                "deployment {id} holds {found:?}, but the last committed write was one of \
                 {:?}",
                (candidates.iter())
                    .map(|w| (w.by, &w.shapes))
                    .collect::<Vec<_>>()
            ));
        }
    }
    found_wrong
}

async fn both_versions_write_side_by_side(backend: Backend) {
    let db = TestDb::create(backend, "rollout").await;
    seed(&db).await;
    // The old version is running (its statements prepared) when the migration starts, as
    // it is in production; the new version is deployed once the expand phase has begun.
    let db = Arc::new(db);
    let old = Running::start(Version::Old, &db);
    old.wait_for(10).await;
    Migrator::up(&db.conn, Some(2))
        .await
        .expect("up to the expand phase");
    let during_up = old.writes();
    let new = Running::start(Version::New, &db);
    tokio::time::sleep(SIDE_BY_SIDE).await;
    let (new, old) = (new.stop().await, old.stop().await);

    let found_wrong = disagreements(&db, &[&old, &new]).await;
    println!(
        "{:?}: the old version made {} writes ({during_up} by the end of up, {} retried), the \
         new version {} ({} retried); {} of {} deployments disagree",
        db.backend,
        old.writes.len(),
        old.retried,
        new.writes.len(),
        new.retried,
        found_wrong.len(),
        DEPLOYMENTS
    );
    assert!(found_wrong.is_empty(), "{}", found_wrong.join("\n"));
    assert!(
        old.writes.len() >= 20 && new.writes.len() >= 20,
        "the versions barely overlapped: {} old and {} new writes",
        old.writes.len(),
        new.writes.len()
    );
    assert_eq!(
        read::count(&db, "deployment_job_agent_backfill_reject").await,
        0
    );
}

/// Where a crash case kills the migration: in `up -n 3` while the old version writes (the
/// new one starts after the rerun), or in the drop step's `down` while the new version
/// writes (the old one, rolled back to, starts after the rerun).
#[derive(Clone, Copy, Debug)]
enum Killed {
    EnteringThePhase,
    ReenteringThePhase,
}

/// Set for the child process: the database it migrates, and which way.
const CHILD_URL: &str = "ROLLOUT_CHILD_DATABASE_URL";
const CHILD_DOWN: &str = "ROLLOUT_CHILD_DOWN";

/// Not a test of its own: the child process's entry point, idle unless `CHILD_URL` is set.
/// It runs `up -n 3` from the baseline, or with `CHILD_DOWN` the drop step's `down`.
#[test]
fn child_process_entry_point() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("migration=debug")
        .try_init();
    runtime.block_on(async {
        let db = Database::connect(&url).await.expect("the child connects");
        let done = match std::env::var(CHILD_DOWN) {
            Ok(_) => Migrator::down(&db, Some(1)).await,
            Err(_) => Migrator::up(&db, Some(2)).await,
        };
        if let Err(error) = done {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    });
}

/// Runs the child on `db`, killed at its `k`th crash point; whether it was.
fn run_child(db: &TestDb, killed: Killed, k: usize) -> bool {
    let mut command = tests::child_process(CHILD_URL, &db.url);
    command.env("MIGRATION_CRASH_AT", k.to_string());
    if let Killed::ReenteringThePhase = killed {
        command.env(CHILD_DOWN, "1");
    }
    let child = command.output().expect("spawn the child");
    if child.status.success() {
        return false;
    }
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        stderr.contains("fault injection: aborting"),
        "the child failed otherwise:\n{stderr}"
    );
    true
}

/// What the operator does after a crash: the same command again.
async fn rerun(db: &TestDb, killed: Killed) {
    let applied = Migrator::get_applied_migrations(&db.conn)
        .await
        .unwrap()
        .len();
    let done = match killed {
        Killed::EnteringThePhase => Migrator::up(&db.conn, Some(3 - applied as u32)).await,
        Killed::ReenteringThePhase if applied == 4 => Migrator::down(&db.conn, Some(1)).await,
        Killed::ReenteringThePhase => Ok(()),
    };
    done.unwrap_or_else(|e| panic!("the rerun after {killed:?}: {e}"));
}

/// Killed at any point while one version writes, the migration run again leaves every
/// deployment, in both shapes, with the last write either version committed.
async fn a_crash_while_a_version_writes_leaves_the_shapes_in_step(backend: Backend) {
    for killed in [Killed::EnteringThePhase, Killed::ReenteringThePhase] {
        let (during, after) = match killed {
            Killed::EnteringThePhase => (Version::Old, Version::New),
            Killed::ReenteringThePhase => (Version::New, Version::Old),
        };
        let mut kill_points = 0;
        for k in 1.. {
            let name = format!("rollout_crash_{}_{k}", killed.command());
            let db = Arc::new(TestDb::create(backend, &name).await);
            seed(&db).await;
            if let Killed::ReenteringThePhase = killed {
                Migrator::up(&db.conn, None).await.expect("all the way up");
            }
            let first = Running::start(during, &db);
            first.wait_for(5).await;
            let crashed = run_child(&db, killed, k);
            if crashed {
                kill_points += 1;
                rerun(&db, killed).await;
            }
            // Five writes of each version reach every deployment.
            let second = Running::start(after, &db);
            second.wait_for(5).await;
            let reports = [first.stop().await, second.stop().await];
            let found_wrong = disagreements(&db, &[&reports[0], &reports[1]]).await;
            assert!(
                found_wrong.is_empty(),
                "{killed:?}, killed at crash point {k}:\n{}",
                found_wrong.join("\n")
            );
            if !crashed {
                break;
            }
        }
        println!("{backend:?}, {killed:?}: {kill_points} kill points, each rerun in step");
        assert!(
            kill_points >= 3,
            "only {kill_points} kill points were reached"
        );
    }
}

impl Killed {
    /// The command the child runs.
    fn command(self) -> &'static str {
        match self {
            Killed::EnteringThePhase => "up",
            Killed::ReenteringThePhase => "down",
        }
    }
}

on_every_backend_at_once!(
    both_versions_write_side_by_side,
    a_crash_while_a_version_writes_leaves_the_shapes_in_step,
);
