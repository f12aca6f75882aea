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
//! let context = migration::context::Context::from_env()?;
//! let preview = migration::backfill::preview(&context, &db).await?;
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

// The engine's modules and types that a caller of the migrations uses keep their paths here
// (`migration::settings`, `migration::Holder`, …).
pub use online_migration::migrator_lock::Holder;
pub use online_migration::{context, replicas, settings, stop};

use online_migration::context::Context;
use online_migration::migrator_lock::steps::{Steps, reborrow};
use online_migration::migrator_lock::{self, Held};
use tables::LEDGER;

mod backends;
pub mod backfill;
pub mod data_guard;
pub mod expand;
#[doc(hidden)]
pub mod fault;
pub mod ids;
mod join_table;
pub mod legacy_columns;
pub mod legacy_shape;
mod m20261125_000001_create_legacy_baseline;
mod m20261125_000002_create_deployment_job_agent;
mod m20261125_000003_backfill_deployment_job_agent;
mod m20261125_000004_drop_legacy_job_agent_columns;
mod ownership;
pub mod privileges;
mod refill;
mod retire;
mod sync_guard;
mod tables;

/// The migrations, in order. `Migrator::up` and the rest of [`MigratorTrait`] read their
/// settings from the environment ([`Context::from_env`]); [`Migrator::with`] runs them with
/// a context of your own.
pub struct Migrator;

impl Migrator {
    /// The same commands with `context`: the settings and the stop request of this run.
    ///
    /// ```
    /// use std::time::Duration;
    /// use migration::{Migrator, context::Context, settings::Settings};
    /// use sea_orm_migration::sea_orm::Database;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sea_orm_migration::DbErr> {
    /// let db = Database::connect("sqlite::memory:").await?;
    /// let context = Context::new(Settings { batch_size: 500, ..Settings::default() });
    /// Migrator::with(context).up(&db, None).await?;
    /// # Ok(()) }
    /// ```
    pub fn with(context: Context) -> Configured {
        // MariaDB's sync guard is a session variable: no locked step hands its connection
        // back to the pool with it set, whatever the step did.
        let reset = |backend| backends::of(backend).session_reset();
        Configured {
            context: context.with_session_reset(std::sync::Arc::new(reset)),
        }
    }
}

/// The migrations, each with `context`.
fn migrations(context: &Context) -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m20261125_000001_create_legacy_baseline::Migration),
        Box::new(m20261125_000002_create_deployment_job_agent::Migration {
            context: context.clone(),
        }),
        Box::new(m20261125_000003_backfill_deployment_job_agent::Migration {
            context: context.clone(),
        }),
        Box::new(m20261125_000004_drop_legacy_job_agent_columns::Migration {
            context: context.clone(),
        }),
    ]
}

/// [`Migrator`] with a [`Context`]. Every command that changes the schema holds the
/// migrator lock (see `migrator_lock`) from before it reads which migrations are pending
/// until it is done, so that replicas starting at once apply each migration once: the
/// others wait, then find nothing to do.
#[derive(Debug, Clone)]
pub struct Configured {
    context: Context,
}

impl Configured {
    /// The migrations of this run, reporting their steps to the lock `held`.
    fn steps(&self, held: std::sync::Arc<Held>) -> Steps {
        let context = self.context.clone();
        Steps::new(
            Box::new(move || migrations(&context)),
            held,
            tables::DEPLOYMENT,
        )
    }

    /// Applies the pending migrations (`steps` of them, or all).
    pub async fn up<'c, C>(&self, db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        let db = db.into_database_executor();
        let db = &db;
        migrator_lock::run(&self.context, &LEDGER, db, |held, waited_for| async move {
            explain_the_phase(db).await?;
            let migrator = self.steps(held);
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

    /// Rolls back the last `steps` applied migrations (or all).
    pub async fn down<'c, C>(&self, db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        self.locked(db.into_database_executor(), async |migrator, db| {
            migrator.down(db, steps).await
        })
        .await
    }

    /// Drops every table, then applies every migration.
    pub async fn fresh<'c, C>(&self, db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        self.locked(db.into_database_executor(), async |migrator, db| {
            migrator.fresh(db).await
        })
        .await
    }

    /// Rolls back every migration, then applies them again.
    pub async fn refresh<'c, C>(&self, db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        self.locked(db.into_database_executor(), async |migrator, db| {
            migrator.refresh(db).await
        })
        .await
    }

    /// Rolls back every migration.
    pub async fn reset<'c, C>(&self, db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        self.locked(db.into_database_executor(), async |migrator, db| {
            migrator.reset(db).await
        })
        .await
    }

    /// `command` run by sea-orm-migration under the migrator lock.
    async fn locked<F>(&self, db: DatabaseExecutor<'_>, command: F) -> Result<(), DbErr>
    where
        F: AsyncFnOnce(&Steps, DatabaseExecutor<'_>) -> Result<(), DbErr>,
    {
        let db = &db;
        migrator_lock::run(&self.context, &LEDGER, db, |held, _| async move {
            explain_the_phase(db).await?;
            command(&self.steps(held), reborrow(db)).await
        })
        .await
    }
}

/// Holds the phase record against `seaql_migrations` (see [`phase`])
/// and says what it found.
async fn explain_the_phase(db: &DatabaseExecutor<'_>) -> Result<(), DbErr> {
    let manager = SchemaManager::new(reborrow(db));
    let phase = online_migration::phase::reconcile(&manager, &LEDGER, tables::DEPLOYMENT);
    if let Some(finding) = phase.await? {
        tracing::warn!("{finding}");
    }
    Ok(())
}

/// The commands with the environment's settings ([`Context::from_env`]).
#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        // Only the names matter to the callers of this list (`status`, the pending list):
        // the commands below build theirs from the environment and stop on an unreadable
        // setting.
        migrations(&Context::from_env().unwrap_or_default())
    }

    async fn up<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        Migrator::with(Context::from_env()?).up(db, steps).await
    }

    async fn down<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        Migrator::with(Context::from_env()?).down(db, steps).await
    }

    async fn fresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        Migrator::with(Context::from_env()?).fresh(db).await
    }

    async fn refresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        Migrator::with(Context::from_env()?).refresh(db).await
    }

    async fn reset<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        Migrator::with(Context::from_env()?).reset(db).await
    }
}

/// Who holds the migrator lock of `db` now, if anyone says so (`status` prints it).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sea_orm_migration::DbErr> {
/// use migration::{Migrator, MigratorTrait};
/// let db = sea_orm_migration::sea_orm::Database::connect("sqlite::memory:").await?;
/// Migrator::up(&db, None).await?;
/// // The run is over: nobody holds the lock.
/// assert_eq!(migration::migrator_lock_holder(&db).await, None);
/// # Ok(()) }
/// ```
pub async fn migrator_lock_holder(
    db: &sea_orm_migration::sea_orm::DatabaseConnection,
) -> Option<Holder> {
    migrator_lock::migrator_lock_holder(db, &LEDGER).await
}

/// The phase record of these migrations (the engine's [`online_migration::phase`], on this
/// change's table `deployment_job_agent_phase`): which step `deployment` is in, which way,
/// how far, since when and by whom.
///
/// ```
/// use migration::{Migrator, MigratorTrait};
/// use sea_orm_migration::sea_orm::Database;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sea_orm_migration::DbErr> {
/// let db = Database::connect("sqlite::memory:").await?;
/// Migrator::up(&db, Some(2)).await?;
/// let phase = &migration::phase::read(&db).await?[0];
/// assert_eq!(phase.table, "deployment");
/// assert_eq!(phase.step, "m20261125_000002_create_deployment_job_agent");
/// assert_eq!((phase.direction.as_str(), phase.state.as_str()), ("up", "done"));
/// # Ok(()) }
/// ```
pub mod phase {
    pub use online_migration::phase::Phase;
    use sea_orm_migration::{DbErr, IntoSchemaManagerConnection};

    /// Every table's row; none where nothing was recorded yet.
    pub async fn read<'c>(db: impl IntoSchemaManagerConnection<'c>) -> Result<Vec<Phase>, DbErr> {
        online_migration::phase::read(db, &crate::tables::LEDGER).await
    }
}
