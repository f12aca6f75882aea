//! Several migrators of one database at once, as the replicas of a rolling deploy start:
//! each step is done by exactly one of them, the others wait for it and exit 0, and the
//! end state is a single run's.
//!
//! Each migrator is this test binary run again as a child process that runs `Migrator::up`
//! (what an application's start-up does), logging at INFO to its stderr.
#![cfg(feature = "runtime-tokio")]

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use tests::end_state::{EndState, end_state};
use tests::legacy::hand_built_messy;
use tests::{Backend, MIGRATIONS, TestDb, on_every_backend_at_once, read};

on_every_backend_at_once!(
    four_migrators_started_at_once_do_each_step_once,
    four_migrators_started_a_second_apart_wait_for_the_first,
    a_migrator_that_waits_too_long_gives_up_changing_nothing,
    reset_leaves_no_lock_behind,
);

/// Set for the child process: the database it migrates.
const CHILD_URL: &str = "MIGRATORS_TEST_CHILD_DATABASE_URL";
const DEPLOYMENTS: u128 = 30;

/// Not a test of its own: the child process's entry point, idle unless `CHILD_URL` is set.
#[test]
fn child_process_entry_point() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_ansi(false)
        .init();
    tests::migrate_as_child(&url, false);
}

async fn seeded(backend: Backend, name: &str) -> TestDb {
    let db = TestDb::create(backend, name).await;
    hand_built_messy(&db, DEPLOYMENTS).await;
    db
}

/// The end state of one migrator alone on the same rows.
async fn single_run(backend: Backend, name: &str) -> EndState {
    let reference = seeded(backend, name).await;
    Migrator::up(&reference.conn, None)
        .await
        .expect("single run");
    let expected = end_state(&reference).await;
    assert!(!expected.links.is_empty() && !expected.rejects.is_empty());
    expected
}

/// A migrator of `db`, started now; `slow` makes it hold the lock for ten seconds at
/// least (ten backfill batches, each a second), while the others start.
fn migrator(db: &TestDb, slow: bool) -> Child {
    let mut command: Command = tests::child_process(CHILD_URL, &db.url);
    command
        .env("MIGRATION_BATCH_SIZE", "6")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if slow {
        command
            .env("MIGRATION_BATCH_SIZE", "3")
            .env("MIGRATION_PAUSE_AT", "backfill: batch committed");
    }
    command.spawn().expect("spawn a migrator")
}

/// Each migrator's exit and log, once all have ended. Each child's pipes are drained by a
/// thread of its own: a holder blocked on a full pipe would hold the lock forever.
async fn finished(children: Vec<Child>) -> Vec<Output> {
    tokio::task::spawn_blocking(|| {
        let readers: Vec<_> = (children.into_iter())
            .map(|child| std::thread::spawn(|| child.wait_with_output()))
            .collect();
        (readers.into_iter())
            .map(|reader| reader.join().unwrap().expect("a migrator's output"))
            .collect()
    })
    .await
    .unwrap()
}

fn log(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every migrator exited 0, and each migration was applied by exactly one of them.
fn assert_each_step_done_once(outputs: &[Output]) {
    let logs: Vec<String> = outputs.iter().map(log).collect();
    for (output, log) in outputs.iter().zip(&logs) {
        assert!(output.status.success(), "a migrator failed:\n{log}");
    }
    for migration in MIGRATIONS {
        let applied = format!("Migration '{migration}' has been applied");
        let by: usize = logs.iter().filter(|log| log.contains(&applied)).count();
        assert_eq!(
            by,
            1,
            "{migration} applied by {by} migrators:\n{}",
            logs.join("\n---\n")
        );
    }
}

async fn four_migrators_started_at_once_do_each_step_once(backend: Backend) {
    let expected = single_run(backend, "migrators_once_reference").await;
    let db = seeded(backend, "migrators_at_once").await;
    let children = (0..4).map(|_| migrator(&db, false)).collect();
    let outputs = finished(children).await;
    assert_each_step_done_once(&outputs);
    assert_eq!(end_state(&db).await, expected);
}

async fn four_migrators_started_a_second_apart_wait_for_the_first(backend: Backend) {
    let expected = single_run(backend, "migrators_apart_reference").await;
    let db = seeded(backend, "migrators_apart").await;
    let mut children = vec![migrator(&db, true)];
    let first_pid = children[0].id();
    // What `status` says meanwhile: who holds the lock. The others start once it does.
    let mut holder = None;
    for _ in 0..300 {
        holder = migration::migrator_lock_holder(&db.conn).await;
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder = holder.expect("the first migrator holds the lock");
    assert_eq!(holder.pid, Some(i64::from(first_pid)), "{holder}");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        children.push(migrator(&db, false));
    }
    let outputs = finished(children).await;
    assert_each_step_done_once(&outputs);
    assert_eq!(migration::migrator_lock_holder(&db.conn).await, None);
    let first = log(&outputs[0]);
    assert!(
        first.contains(&format!("Migration '{}' has been applied", MIGRATIONS[3])),
        "{first}"
    );
    for later in &outputs[1..] {
        let later = log(later);
        // Who holds it, and where it is: the first migrator, in the backfill.
        let waiting = later
            .lines()
            .find(|line| line.contains("waiting for another migrator"))
            .unwrap_or_else(|| panic!("it did not wait:\n{later}"));
        assert!(
            waiting.contains(&format!("process {first_pid}"))
                || waiting.contains("has not said who it is yet"),
            "{waiting}"
        );
        assert!(later.contains("nothing to do:"), "{later}");
    }
    assert_eq!(end_state(&db).await, expected);
}

async fn a_migrator_that_waits_too_long_gives_up_changing_nothing(backend: Backend) {
    let db = seeded(backend, "migrators_give_up").await;
    let holder = migrator(&db, true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut impatient = tests::child_process(CHILD_URL, &db.url);
    impatient
        .env("MIGRATION_MIGRATOR_WAIT", "1s")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let impatient = impatient.spawn().expect("spawn a migrator");
    let outputs = finished(vec![holder, impatient]).await;
    assert!(outputs[0].status.success(), "{}", log(&outputs[0]));
    let gave_up = log(&outputs[1]);
    assert!(!outputs[1].status.success(), "{gave_up}");
    let error: Vec<&str> = gave_up
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(error.len(), 1, "{gave_up}");
    assert!(
        error[0].contains("another migrator still holds the migration lock after 1s")
            && error[0].contains("nothing was changed"),
        "{}",
        error[0]
    );
    assert!(!gave_up.contains("has been applied"), "{gave_up}");
}

/// The lock's table says who migrates; `reset`, which leaves nothing of the migrations,
/// takes it too.
async fn reset_leaves_no_lock_behind(backend: Backend) {
    let db = seeded(backend, "migrators_reset").await;
    let lock_table = "deployment_job_agent_migrator";
    Migrator::up(&db.conn, None).await.expect("up");
    assert!(!read::columns(&db, lock_table).await.is_empty());
    Migrator::reset(&db.conn).await.expect("reset");
    assert_eq!(read::columns(&db, lock_table).await, Vec::<String>::new());
    assert_eq!(migration::migrator_lock_holder(&db.conn).await, None);
}

/// On the three-node Galera cluster of `scripts/galera` (`--features galera`): one migrator
/// per node, where `GET_LOCK` holds on one node only; the lease row holds across them.
#[cfg(feature = "galera")]
mod galera {
    use super::*;
    use tests::galera::{GaleraDb, start_cluster};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrators_on_every_node_do_each_step_once() {
        start_cluster();
        let expected = single_run(Backend::MariaDb, "migrators_galera_reference").await;
        let cluster = GaleraDb::create("migrators_galera").await;
        hand_built_messy(cluster.first(), DEPLOYMENTS).await;
        let mut children = vec![migrator(&cluster.nodes[0], true)];
        tokio::time::sleep(Duration::from_secs(1)).await;
        children.push(migrator(&cluster.nodes[1], false));
        children.push(migrator(&cluster.nodes[2], false));
        let outputs = finished(children).await;
        assert_each_step_done_once(&outputs);
        for other_node in &outputs[1..] {
            let log = log(other_node);
            assert!(log.contains("waiting for another migrator"), "{log}");
            assert!(log.contains("nothing to do:"), "{log}");
        }
        assert_eq!(end_state(&cluster.nodes[2]).await, expected);
    }

    /// A holder killed on node 1 (no cleanup) is taken over from node 2 once its lease
    /// lapses, and the database is finished.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_killed_on_one_node_is_taken_over_from_another() {
        start_cluster();
        let expected = single_run(Backend::MariaDb, "migrators_galera_kill_reference").await;
        let cluster = GaleraDb::create("migrators_galera_kill").await;
        hand_built_messy(cluster.first(), DEPLOYMENTS).await;
        let mut killed = tests::child_process(CHILD_URL, &cluster.nodes[0].url);
        killed
            .env("MIGRATION_CRASH_AT", "backfill: batch committed")
            .env("MIGRATION_MIGRATOR_LEASE", "3s");
        let killed = killed.output().expect("run a migrator");
        let stderr = String::from_utf8_lossy(&killed.stderr);
        assert!(stderr.contains("fault injection: aborting"), "{stderr}");
        let mut next = tests::child_process(CHILD_URL, &cluster.nodes[1].url);
        next.env("MIGRATION_MIGRATOR_LEASE", "3s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let outputs = finished(vec![next.spawn().expect("spawn a migrator")]).await;
        let log = log(&outputs[0]);
        assert!(outputs[0].status.success(), "{log}");
        assert!(log.contains("waiting for another migrator"), "{log}");
        assert!(log.contains("has been applied"), "{log}");
        assert_eq!(end_state(&cluster.nodes[2]).await, expected);
    }
}
