//! Migrations that move a deployment's job agents from JSON columns into the join table
//! `deployment_job_agent`.
//!
//! Run them with this crate's binary (`cargo run -p migration -- up`) or `sea-orm-cli
//! migrate`, or from code:
//!
//! ```
//! use migration::{Migrator, MigratorTrait};
//! use sea_orm_migration::sea_orm::{ConnectionTrait, Database};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sea_orm_migration::DbErr> {
//! let db = Database::connect("sqlite::memory:").await?;
//! Migrator::up(&db, Some(1)).await?; // the legacy tables
//! db.execute_unprepared(
//!     "INSERT INTO job_agent (id, name) VALUES ('6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b', 'k8s');
//!      INSERT INTO deployment (id, name, job_agent_config, job_agents) VALUES
//!        ('d0000000-0000-4000-8000-000000000001', 'api', '{}',
//!         '[{\"ref\": \"6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B\", \"config\": {\"ns\": \"api\"}}, 42]');",
//! )
//! .await?;
//!
//! // What `up` would do, changing nothing:
//! let preview = migration::backfill::preview(&db).await?;
//! assert_eq!((preview.deployments, preview.links), (1, 1));
//!
//! Migrator::up(&db, None).await?;
//! let rejects = db.query_all_raw(sea_orm_migration::sea_orm::Statement::from_string(
//!     db.get_database_backend(),
//!     "SELECT reason FROM deployment_job_agent_backfill_reject",
//! ))
//! .await?;
//! assert_eq!(rejects[0].try_get_by_index::<String>(0)?, "malformed_entry");
//! # Ok(()) }
//! ```
//!
//! The backfill's rules live in [`backfill::rules`]; what it could not carry over whole is
//! recorded in `deployment_job_agent_backfill_reject`.

#![warn(missing_docs)]

pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseExecutor;

use migrator_lock::steps::{Steps, reborrow};

mod backends;
pub mod backfill;
pub mod data_guard;
pub mod expand;
#[doc(hidden)]
pub mod fault;
pub mod ids;
pub mod legacy_columns;
pub mod legacy_shape;
mod locks;
mod m20261125_000001_create_legacy_baseline;
mod m20261125_000002_create_deployment_job_agent;
mod m20261125_000003_backfill_deployment_job_agent;
mod m20261125_000004_drop_legacy_job_agent_columns;
mod migrator_lock;
pub use migrator_lock::{Holder, migrator_lock_holder};
mod ownership;
pub mod privileges;
mod refill;
pub mod replicas;
mod retire;
mod runtime;
pub mod settings;
pub mod stop;
mod sync_guard;
mod table_rows;
mod tables;

/// The migrations, in order.
pub struct Migrator;

/// Every command that changes the schema holds the migrator lock (see `migrator_lock`)
/// from before it reads which migrations are pending until it is done, so that replicas
/// starting at once apply each migration once: the others wait, then find nothing to do.
#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_legacy_baseline::Migration),
            Box::new(m20261125_000002_create_deployment_job_agent::Migration),
            Box::new(m20261125_000003_backfill_deployment_job_agent::Migration),
            Box::new(m20261125_000004_drop_legacy_job_agent_columns::Migration),
        ]
    }

    async fn up<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        let db = db.into_database_executor();
        let db = &db;
        migrator_lock::run(db, |held, waited_for| async move {
            let migrator = Steps::new(<Self as MigratorTrait>::migrations, held);
            if let Some(holder) = waited_for
                && migrator.nothing_pending(db).await
            {
                tracing::info!(
                    "nothing to do: {holder} applied the migrations while this one waited"
                );
                return Ok(());
            }
            migrator.up(reborrow(db), steps).await
        })
        .await
    }

    async fn down<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        locked(db.into_database_executor(), async |migrator, db| {
            migrator.down(db, steps).await
        })
        .await
    }

    async fn fresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        locked(db.into_database_executor(), async |migrator, db| {
            migrator.fresh(db).await
        })
        .await
    }

    async fn refresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        locked(db.into_database_executor(), async |migrator, db| {
            migrator.refresh(db).await
        })
        .await
    }

    async fn reset<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        locked(db.into_database_executor(), async |migrator, db| {
            migrator.reset(db).await
        })
        .await
    }
}

/// `command` run by sea-orm-migration under the migrator lock.
async fn locked<F>(db: DatabaseExecutor<'_>, command: F) -> Result<(), DbErr>
where
    F: AsyncFnOnce(&Steps, DatabaseExecutor<'_>) -> Result<(), DbErr>,
{
    let db = &db;
    migrator_lock::run(db, |held, _| async move {
        let migrator = Steps::new(<Migrator as MigratorTrait>::migrations, held);
        command(&migrator, reborrow(db)).await
    })
    .await
}
