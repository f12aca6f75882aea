//! Bounded lock waits: a session that keeps a write transaction on `deployment` open (an
//! application's forgotten transaction, a long report) must delay the migration, never the
//! application's readers. For every step that locks, up and down, on PostgreSQL and MariaDB:
//! while the blocker holds its lock for several lock timeouts, a reader loop measures its
//! longest wait (it must stay under twice the timeout), and the step finishes once the
//! blocker ends. When the blocker outlives the retry limit, the step gives up with one clear
//! error and a rerun finishes the job.
#![cfg(feature = "runtime-tokio")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use migration::Migrator;
use migration::context::Context;
use migration::settings::Settings;
use sea_orm::{ConnectionTrait, Database, DatabaseTransaction, TransactionTrait};
use tests::legacy::{Legacy, LegacySchema};
use tests::{Backend, TestDb, read};
use uuid::Uuid;

const LOCK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the blocker keeps its transaction open: several lock timeouts.
const HELD_FOR: Duration = Duration::from_millis(3_500);

/// A migration step, run from the state just before it.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `up` of migration n (2: join table, 3: backfill, 4: drop).
    Up(u32),
    /// `down` of migration n, from the state where it is the last one applied.
    Down(u32),
}

impl Step {
    async fn prepare(self, db: &TestDb, context: &Context) {
        let applied = match self {
            Step::Up(n) => n - 1,
            Step::Down(n) => n,
        };
        Migrator::with(context.clone())
            .up(&db.conn, Some(applied))
            .await
            .expect("prepare");
    }

    async fn run(self, url: String, context: Context) -> Result<(), sea_orm::DbErr> {
        let conn = Database::connect(&url).await?;
        let migrator = Migrator::with(context);
        match self {
            Step::Up(_) => migrator.up(&conn, Some(1)).await,
            Step::Down(_) => migrator.down(&conn, Some(1)).await,
        }
    }
}

tests::on_server_backends!(
    creating_the_join_table_locks_no_parent_and_no_reader_waits_for_it,
    the_backfill_waits_for_a_blocker_and_no_reader_waits_for_it,
    dropping_the_columns_waits_for_a_blocker_and_no_reader_waits_for_it,
    restoring_the_columns_waits_for_a_blocker_and_no_reader_waits_for_it,
    removing_the_capture_waits_for_a_blocker_and_no_reader_waits_for_it,
    dropping_the_join_table_waits_for_a_blocker_and_no_reader_waits_for_it,
    a_blocker_past_the_retry_limit_fails_the_step_and_a_rerun_finishes,
    restoring_many_columns_never_holds_readers_for_long,
);

async fn creating_the_join_table_locks_no_parent_and_no_reader_waits_for_it(b: Backend) {
    a_held_lock_delays_the_step_and_no_reader(b, Step::Up(2)).await;
}

async fn the_backfill_waits_for_a_blocker_and_no_reader_waits_for_it(b: Backend) {
    a_held_lock_delays_the_step_and_no_reader(b, Step::Up(3)).await;
}

async fn dropping_the_columns_waits_for_a_blocker_and_no_reader_waits_for_it(b: Backend) {
    a_held_lock_delays_the_step_and_no_reader(b, Step::Up(4)).await;
}

async fn restoring_the_columns_waits_for_a_blocker_and_no_reader_waits_for_it(b: Backend) {
    a_held_lock_delays_the_step_and_no_reader(b, Step::Down(4)).await;
}

async fn removing_the_capture_waits_for_a_blocker_and_no_reader_waits_for_it(b: Backend) {
    a_held_lock_delays_the_step_and_no_reader(b, Step::Down(3)).await;
}

async fn dropping_the_join_table_waits_for_a_blocker_and_no_reader_waits_for_it(b: Backend) {
    a_held_lock_delays_the_step_and_no_reader(b, Step::Down(2)).await;
}

fn deployment(n: u128) -> Uuid {
    Uuid::from_u128(0xd000 + n)
}

/// A hand-built legacy database with a few linked deployments.
async fn seeded(backend: Backend, name: &str) -> TestDb {
    let db = TestDb::create(backend, name).await;
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    let (ws, agent) = (Uuid::from_u128(0x77), Uuid::from_u128(0xa1));
    legacy.workspace(ws).await;
    legacy.agent(agent, Some(ws)).await;
    let entries = format!(r#"[{{"ref": "{agent}", "config": {{"n": 1}}}}]"#);
    for n in 0..20 {
        legacy
            .deployment(deployment(n), Some(ws), None, "{}", &entries)
            .await;
    }
    db
}

fn with_settings(lock_retry_for: Duration) -> Context {
    Context::new(Settings {
        lock_timeout: LOCK_TIMEOUT,
        lock_retry_for,
        ..Settings::default()
    })
}

/// A transaction that has written one deployment and stays open: it holds a row lock and
/// the table lock every writer holds, which conflicts with every strong lock.
async fn open_blocker(db: &TestDb) -> (sea_orm::DatabaseConnection, DatabaseTransaction) {
    let conn = Database::connect(&db.url).await.expect("blocker connects");
    let txn = conn.begin().await.expect("blocker begins");
    let legacy = Legacy {
        db,
        schema: LegacySchema::HandBuilt,
    };
    let update = db.statement(
        "UPDATE deployment SET name = name WHERE id = $1",
        vec![legacy.id(deployment(0))],
    );
    txn.execute_raw(update).await.expect("blocker writes");
    (conn, txn)
}

/// Reads `deployment` in a loop until told to stop; returns the longest single read.
fn spawn_reader(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let conn = Database::connect(&url).await.expect("reader connects");
        let mut longest = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            conn.execute_unprepared("SELECT COUNT(*) FROM deployment")
                .await
                .expect("a reader never fails");
            longest = longest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        longest
    })
}

async fn a_held_lock_delays_the_step_and_no_reader(backend: Backend, step: Step) {
    let context = with_settings(Duration::from_secs(120));
    let db = seeded(backend, &format!("locks_{step:?}").replace(['(', ')'], "")).await;
    step.prepare(&db, &context).await;
    let (_blocker_conn, blocker) = open_blocker(&db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(db.url.clone(), stop.clone());

    let started = Instant::now();
    let migrating = tokio::spawn(step.run(db.url.clone(), context));
    tokio::time::sleep(HELD_FOR).await;
    let still_running = !migrating.is_finished();
    blocker.rollback().await.expect("blocker ends");
    let result = migrating.await.expect("the step's task");
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let longest_read = reader.await.expect("the reader's task");

    println!(
        "{backend:?} {step:?}: step took {} ms beside a {} ms blocker; longest read {} ms \
         (lock timeout {} ms)",
        took.as_millis(),
        HELD_FOR.as_millis(),
        longest_read.as_millis(),
        LOCK_TIMEOUT.as_millis()
    );
    result.unwrap_or_else(|e| panic!("{step:?} must finish once the blocker is gone: {e}"));
    // Creating the join table locks no parent against writers: MariaDB declares its keys
    // without, PostgreSQL declares them only at the end of the backfill.
    let conflicts = !matches!(step, Step::Up(2));
    assert_eq!(
        still_running, conflicts,
        "{step:?} waiting for the blocker (its lock conflicts with a writer's: {conflicts})"
    );
    assert!(
        longest_read < 2 * LOCK_TIMEOUT,
        "a reader waited {} ms behind {step:?} (lock timeout {} ms)",
        longest_read.as_millis(),
        LOCK_TIMEOUT.as_millis()
    );
    assert_step_done(&db, step).await;
}

/// What each step leaves behind, so "finished" means it did its work.
async fn assert_step_done(db: &TestDb, step: Step) {
    if let Step::Down(2) = step {
        assert!(read::columns(db, "deployment_job_agent").await.is_empty());
        return;
    }
    let links = read::count(db, "deployment_job_agent").await;
    let legacy = read::columns(db, "deployment")
        .await
        .contains(&"job_agents".to_owned());
    match step {
        Step::Up(2) => assert_eq!(links, 0),
        Step::Up(3) => assert_eq!(links, 20, "every deployment linked"),
        Step::Up(4) => assert!(!legacy && links == 20, "columns dropped, links kept"),
        Step::Down(4) => assert!(legacy && links == 20, "columns back"),
        Step::Down(3) => assert_eq!(links, 0, "links removed"),
        step => unreachable!("{step:?}"),
    }
}

async fn a_blocker_past_the_retry_limit_fails_the_step_and_a_rerun_finishes(backend: Backend) {
    let context = with_settings(Duration::from_secs(2));
    let db = seeded(backend, "locks_retry_limit").await;
    Step::Up(4).prepare(&db, &context).await;
    let (_blocker_conn, blocker) = open_blocker(&db).await;
    let blocker_session: i64 = {
        let sql = match backend {
            Backend::Postgres => "SELECT CAST(pg_backend_pid() AS bigint)",
            _ => "SELECT CAST(CONNECTION_ID() AS SIGNED)",
        };
        let row = blocker
            .query_one_raw(db.statement(sql, vec![]))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index(0).unwrap()
    };

    let error = Step::Up(4)
        .run(db.url.clone(), context.clone())
        .await
        .expect_err("the step must give up while the blocker holds on");
    let message = error.to_string();
    println!("{backend:?}: {message}");
    assert!(
        message.contains("gave up on dropping the legacy columns"),
        "{message}"
    );
    assert!(
        message.contains(&format!("session {blocker_session} ")),
        "the error must name the blocking session {blocker_session}: {message}"
    );
    assert!(
        read::columns(&db, "deployment")
            .await
            .contains(&"job_agents".to_owned()),
        "a step that gave up changed nothing"
    );

    blocker.rollback().await.expect("blocker ends");
    Migrator::with(context)
        .up(&db.conn, None)
        .await
        .expect("a rerun finishes the job");
    assert_step_done(&db, Step::Up(4)).await;
}

/// `down` of the drop on a table of some size: the columns come back in an instant, are
/// filled in batches and constrained in short steps, so a reader never waits long, however
/// long the whole `down` takes.
async fn restoring_many_columns_never_holds_readers_for_long(backend: Backend) {
    let context = Context::new(Settings {
        lock_timeout: LOCK_TIMEOUT,
        lock_retry_for: Duration::from_secs(120),
        batch_size: 500,
        ..Settings::default()
    });
    let db = seeded(backend, "locks_restore_many").await;
    let many = match backend {
        Backend::Postgres => {
            "INSERT INTO deployment (id, name, job_agent_config, workspace_id, job_agents) \
             SELECT uuid_generate_v4(), 'bulk', '{}', NULL, \
               CAST('[{\"ref\": \"00000000-0000-0000-0000-0000000000a1\"}]' AS jsonb) \
             FROM generate_series(1, 30000)"
        }
        _ => {
            "INSERT INTO deployment (id, name, job_agent_config, workspace_id, job_agents) \
             SELECT UUID(), 'bulk', '{}', NULL, \
               '[{\"ref\": \"00000000-0000-0000-0000-0000000000a1\"}]' \
             FROM (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2) AS a \
             CROSS JOIN (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
               UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
               UNION ALL SELECT 8 UNION ALL SELECT 9) AS b \
             CROSS JOIN (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
               UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
               UNION ALL SELECT 8 UNION ALL SELECT 9) AS c \
             CROSS JOIN (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
               UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
               UNION ALL SELECT 8 UNION ALL SELECT 9) AS e \
             CROSS JOIN (SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
               UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
               UNION ALL SELECT 8 UNION ALL SELECT 9) AS f"
        }
    };
    db.exec(many, vec![]).await;
    Migrator::with(context.clone())
        .up(&db.conn, None)
        .await
        .expect("up");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(db.url.clone(), stop.clone());
    let started = Instant::now();
    Step::Down(4)
        .run(db.url.clone(), context)
        .await
        .expect("down");
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let longest_read = reader.await.expect("the reader's task");
    println!(
        "{backend:?}: down of the drop over 30,020 deployments took {} ms; longest read {} ms",
        took.as_millis(),
        longest_read.as_millis()
    );
    assert!(
        longest_read < 2 * LOCK_TIMEOUT,
        "a reader waited {} ms during down",
        longest_read.as_millis()
    );
    assert_eq!(read::unfilled_legacy_rows(&db).await, 0, "every row filled");
}

/// A hot standby replays every `ACCESS EXCLUSIVE` lock and holds its own readers behind it, so
/// on PostgreSQL nothing before the drop step may take one on a table the application reads:
/// with a reader's transaction open on `deployment` and `job_agent` on the primary (it holds
/// `ACCESS SHARE`, which conflicts with that lock only), creating the join table and the whole
/// backfill finish without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_up_to_the_backfill_takes_no_lock_that_an_open_reader_holds_up() {
    let migrator = Migrator::with(with_settings(Duration::from_secs(5)));
    let db = seeded(Backend::Postgres, "locks_open_reader").await;
    migrator.up(&db.conn, Some(1)).await.expect("baseline");
    let reader_conn = Database::connect(&db.url).await.expect("reader connects");
    let reader = reader_conn.begin().await.expect("reader begins");
    for table in ["deployment", "job_agent"] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        reader.execute_unprepared(&sql).await.expect("reader reads");
    }
    let started = Instant::now();
    let result = migrator.up(&db.conn, Some(2)).await;
    let took = started.elapsed();
    reader.rollback().await.expect("reader ends");
    println!(
        "Postgres: join table and backfill took {} ms beside an open reader",
        took.as_millis()
    );
    result.expect("up to the backfill finishes beside an open reader");
    assert_eq!(read::count(&db, "deployment_job_agent").await, 20);
}
