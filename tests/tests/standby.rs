//! A PostgreSQL primary with a streaming hot standby (`scripts/pg-standby`): with a maximum
//! replica lag set, the batched steps wait while the standby is further behind, go on once
//! it has caught up, and give up with the standby's name after the retry limit; the result,
//! on the primary and on the standby, is what the rules say. The standby's replay is paused
//! by the tests themselves, so "behind" is certain, not a matter of load.
//!
//! Off PostgreSQL the setting is refused before anything changes.
#![cfg(feature = "runtime-tokio")]

use migration::context::Context;
use std::time::Duration;

use migration::Migrator;
use migration::settings::Settings;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tests::legacy::{Legacy, LegacySchema, seed_messy};
use tests::standby::{StandbyDb, reported_lag};
use tests::{Backend, TestDb, read};

const MAX_LAG: Duration = Duration::from_secs(1);
const DEPLOYMENTS: u128 = 300;

/// The legacy rows, migrated up to the backfill, with the links the backfill will write
/// (as the rules say, before any of it runs) and the standby caught up.
async fn ready_for_the_backfill(test: &str, retry_for: Duration) -> (StandbyDb, u64, Context) {
    let context = Context::new(Settings {
        lock_timeout: Duration::from_secs(1),
        lock_retry_for: retry_for,
        batch_size: 10,
        max_replica_lag: Some(MAX_LAG),
        ..Settings::default()
    });
    let db = StandbyDb::create(test).await;
    let legacy = Legacy::build(&db.primary, LegacySchema::HandBuilt).await;
    seed_messy(&legacy, DEPLOYMENTS).await;
    let expected = migration::backfill::preview(&context, &db.primary.conn)
        .await
        .expect("preview")
        .links;
    assert!(expected > 0, "the seed gives links to write");
    Migrator::with(context.clone())
        .up(&db.primary.conn, Some(2))
        .await
        .expect("baseline and join table");
    db.wait_until_replayed(Duration::from_secs(30)).await;
    (db, expected, context)
}

async fn links_on_the_standby(db: &StandbyDb) -> i64 {
    let standby = TestDb {
        backend: Backend::Postgres,
        url: db.standby_url(),
        conn: sea_orm::Database::connect(db.standby_url())
            .await
            .expect("the standby answers"),
    };
    read::count(&standby, "deployment_job_agent").await
}

mod pg_standby {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_backfill_waits_while_the_standby_lags_and_finishes_once_it_caught_up() {
        let (db, expected, context) =
            ready_for_the_backfill("sb_waits", Duration::from_secs(120)).await;
        let paused = db.pause_replay(2 * MAX_LAG).await;

        let conn = db.primary.conn.clone();
        let migrator = Migrator::with(context);
        let backfill = tokio::spawn(async move { migrator.up(&conn, Some(1)).await });
        tokio::time::sleep(3 * MAX_LAG).await;
        assert!(
            !backfill.is_finished(),
            "the backfill ran on while the standby was {:?} behind",
            reported_lag(&db.primary.conn).await
        );
        assert_eq!(
            read::count(&db.primary, "deployment_job_agent").await,
            0,
            "no batch is written while the standby lags more than the maximum"
        );

        paused.resume();
        let finished = tokio::time::timeout(Duration::from_secs(90), backfill)
            .await
            .expect("the backfill goes on once the standby has caught up")
            .expect("the backfill task");
        finished.expect("the backfill finishes");
        let links = read::count(&db.primary, "deployment_job_agent").await;
        assert_eq!(links as u64, expected, "links on the primary");
        db.wait_until_replayed(Duration::from_secs(30)).await;
        assert_eq!(
            links_on_the_standby(&db).await,
            links,
            "links on the standby"
        );
        println!("backfill waited for the standby, then wrote {links} links (seen on both)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standby_that_stays_behind_stops_the_backfill_by_name_and_a_rerun_finishes() {
        let (db, expected, context) =
            ready_for_the_backfill("sb_gives_up", Duration::from_secs(2)).await;
        let migrator = Migrator::with(context);
        let paused = db.pause_replay(2 * MAX_LAG).await;
        let standby_name = standby_name(&db).await;

        let error = migrator
            .up(&db.primary.conn, Some(1))
            .await
            .expect_err("the standby never catches up while paused")
            .to_string();
        assert!(
            error.contains(&standby_name) && error.contains("behind") && error.contains("again"),
            "the error names the standby, its lag and what to do: {error}"
        );
        assert_eq!(read::count(&db.primary, "deployment_job_agent").await, 0);
        println!("gave up with: {error}");

        drop(paused);
        migrator
            .up(&db.primary.conn, Some(1))
            .await
            .expect("the rerun finishes once the standby has caught up");
        let links = read::count(&db.primary, "deployment_job_agent").await;
        assert_eq!(links as u64, expected);
    }

    async fn standby_name(db: &StandbyDb) -> String {
        let statement = Statement::from_string(
            DbBackend::Postgres,
            "SELECT CAST(application_name AS text) FROM pg_stat_replication",
        );
        let row = db.primary.conn.query_one_raw(statement).await;
        let row = row
            .expect("pg_stat_replication")
            .expect("a standby streams");
        row.try_get_by_index(0).expect("a name")
    }
}

/// MariaDB and SQLite: the setting cannot be honoured, so the backfill refuses to start.
async fn a_maximum_replica_lag_is_refused_where_replicas_are_out_of_sight(backend: Backend) {
    let lagging = Migrator::with(Context::new(Settings {
        max_replica_lag: Some(MAX_LAG),
        ..Settings::default()
    }));
    let db = TestDb::create(backend, "sb_refused").await;
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    seed_messy(&legacy, 20).await;
    let error = lagging
        .up(&db.conn, None)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("PostgreSQL only"), "{error}");
    assert_eq!(read::count(&db, "deployment_job_agent").await, 0);

    Migrator::with(Context::default())
        .up(&db.conn, None)
        .await
        .expect("without the setting, up finishes");
}

/// PostgreSQL hides replay positions from roles without `pg_read_all_stats`: such a role is
/// told what to grant before anything runs, and one with the grant passes.
async fn a_role_that_cannot_see_replay_positions_is_told_what_to_grant(db: TestDb) {
    let role = "jat_replica_lag_role";
    let grant = format!("GRANT pg_read_all_stats TO {role}");
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
    ] {
        db.exec(&sql, vec![]).await;
    }
    let as_role = db
        .url
        .replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let conn = sea_orm::Database::connect(&as_role)
        .await
        .expect("connect as the role");
    let error = migration::replicas::require_visible(&conn)
        .await
        .expect_err("positions are hidden from this role")
        .to_string();
    assert!(error.contains("GRANT pg_read_all_stats"), "{error}");

    db.exec(&grant, vec![]).await;
    migration::replicas::require_visible(&conn)
        .await
        .expect("with the grant, the positions are visible");
}

mod postgres {
    #[tokio::test]
    async fn a_role_that_cannot_see_replay_positions_is_told_what_to_grant() {
        let db = tests::TestDb::create(tests::Backend::Postgres, "sb_role").await;
        super::a_role_that_cannot_see_replay_positions_is_told_what_to_grant(db).await;
    }
}

mod mariadb {
    #[tokio::test]
    async fn a_maximum_replica_lag_is_refused_where_replicas_are_out_of_sight() {
        super::a_maximum_replica_lag_is_refused_where_replicas_are_out_of_sight(
            super::Backend::MariaDb,
        )
        .await;
    }
}

mod sqlite {
    #[tokio::test]
    async fn a_maximum_replica_lag_is_refused_where_replicas_are_out_of_sight() {
        super::a_maximum_replica_lag_is_refused_where_replicas_are_out_of_sight(
            super::Backend::Sqlite,
        )
        .await;
    }
}
