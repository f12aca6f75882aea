//! The migrator as the lock holder runs it: sea-orm-migration's own `up`, `down`, `fresh`,
//! `refresh` and `reset` (through `MigratorTraitSelf`, whose provided methods they are), on
//! migrations that each tell the lock which step they are at.

use std::sync::Arc;

use sea_orm_migration::MigratorTraitSelf;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseExecutor;

use super::Held;
use crate::phase;

/// What makes a migrator's list of migrations.
pub type MigrationList = Box<dyn Fn() -> Vec<Box<dyn MigrationTrait>> + Send + Sync>;

/// The migrations, each reporting its step to the lock.
pub struct Steps {
    migrations: MigrationList,
    held: Arc<Held>,
    /// The table the migrations change, as the phase record names it.
    table: &'static str,
}

impl Steps {
    /// `migrations` (a migrator's list of steps on `table`) run under `held`.
    pub fn new(migrations: MigrationList, held: Arc<Held>, table: &'static str) -> Steps {
        Steps {
            migrations,
            held,
            table,
        }
    }

    /// Whether every migration is applied already (not when the migrator's table is not
    /// there yet: then `up` installs it).
    pub async fn nothing_pending(&self, db: &DatabaseExecutor<'_>) -> bool {
        let pending = MigratorTraitSelf::get_pending_migrations_read_only(self, db).await;
        pending.is_ok_and(|pending| pending.is_empty())
    }

    /// sea-orm-migration's `up`.
    pub async fn up(&self, db: DatabaseExecutor<'_>, steps: Option<u32>) -> Result<(), DbErr> {
        MigratorTraitSelf::up(self, db, steps).await
    }

    /// sea-orm-migration's `down`.
    pub async fn down(&self, db: DatabaseExecutor<'_>, steps: Option<u32>) -> Result<(), DbErr> {
        MigratorTraitSelf::down(self, db, steps).await
    }

    /// sea-orm-migration's `fresh`.
    pub async fn fresh(&self, db: DatabaseExecutor<'_>) -> Result<(), DbErr> {
        MigratorTraitSelf::fresh(self, db).await
    }

    /// sea-orm-migration's `refresh`.
    pub async fn refresh(&self, db: DatabaseExecutor<'_>) -> Result<(), DbErr> {
        MigratorTraitSelf::refresh(self, db).await
    }

    /// sea-orm-migration's `reset`, then the lock's own table: nothing of the migrations
    /// is left (a waiting migrator makes it again).
    pub async fn reset(&self, db: DatabaseExecutor<'_>) -> Result<(), DbErr> {
        MigratorTraitSelf::reset(self, reborrow(&db)).await?;
        let ledger = &self.held.ledger;
        phase::drop_table(&db, ledger).await?;
        super::holder::drop_table(&db, ledger.lock_table).await
    }
}

#[async_trait::async_trait]
impl MigratorTraitSelf for Steps {
    fn migrations(&self) -> Vec<Box<dyn MigrationTrait>> {
        let held = &self.held;
        (self.migrations)()
            .into_iter()
            .map(|inner| -> Box<dyn MigrationTrait> {
                Box::new(Reported {
                    inner,
                    held: held.clone(),
                    table: self.table,
                })
            })
            .collect()
    }
}

/// A migration that tells the lock, before it runs, that the holder is at it, and keeps the
/// phase record: begun, then done or failed.
struct Reported {
    inner: Box<dyn MigrationTrait>,
    held: Arc<Held>,
    table: &'static str,
}

impl Reported {
    /// `run` (the migration's `up` or `down`) between the phase record's begin and end.
    async fn recorded(
        &self,
        manager: &SchemaManager<'_>,
        direction: &str,
        run: impl Future<Output = Result<(), DbErr>>,
    ) -> Result<(), DbErr> {
        let step = format!("{direction} {}", self.name());
        self.held.at_step(&step).await;
        let db = manager.get_connection();
        let ledger = &self.held.ledger;
        // Made once: on Galera every DDL, `IF NOT EXISTS` too, runs in total order across
        // the cluster, and the application's writes wait for it.
        if !manager.has_table(ledger.phase_table).await? {
            phase::create_table(db, ledger).await?;
        }
        phase::began(db, ledger, self.table, self.name(), direction).await?;
        match run.await {
            Ok(()) => phase::ended(db, ledger, self.table).await,
            Err(error) => {
                // What the step failed with stays the error; a record that cannot be
                // written (the connection is gone) is not a second one.
                if let Err(unrecorded) = phase::failed(db, ledger, self.table, &error).await {
                    tracing::debug!("the phase record missed a failure: {unrecorded}");
                }
                Err(error)
            }
        }
    }
}

impl MigrationName for Reported {
    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Reported {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.recorded(manager, "up", self.inner.up(manager)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        self.recorded(manager, "down", self.inner.down(manager))
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        self.inner.use_transaction()
    }
}

/// The same connection or transaction, borrowed again, to hand to sea-orm-migration.
pub fn reborrow<'a>(db: &'a DatabaseExecutor<'_>) -> DatabaseExecutor<'a> {
    match db {
        DatabaseExecutor::Connection(conn) => DatabaseExecutor::Connection(conn),
        DatabaseExecutor::Transaction(txn) => DatabaseExecutor::Transaction(txn),
        DatabaseExecutor::OwnedTransaction(txn) => DatabaseExecutor::Transaction(txn),
    }
}
