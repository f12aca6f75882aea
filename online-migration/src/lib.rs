//! Steps of a schema migration that run beside a live application, whatever the migration
//! changes: the engine under this workspace's `migration` crate, which holds the policy
//! (which tables, which rules). Nothing here names a table of its own.
//!
//! - [`locks`]: every step that takes a strong lock runs in a transaction of its own under a
//!   short lock timeout, retried with backoff while it loses to the application, naming the
//!   sessions in its way, until a retry limit.
//! - [`replicas`]: batched steps pause while a streaming replica lags; [`progress`] says how
//!   far a walk is.
//! - [`migrator_lock`]: one migrator at a time, on every backend and across a Galera
//!   cluster; the others wait, say who holds it, and find the work done.
//! - [`phase`]: which step each table is in, which way, how far, by whom, held against
//!   `seaql_migrations` at every start.
//! - [`data_guard`]: commands that drop tables refuse while they hold a user's rows.
//! - [`context`]: what a run hands every step: its [`settings`] and its [`stop`] request,
//!   as a value; [`ledger`]: the names of a migration's own records.
//! - [`backends`]: what PostgreSQL, MariaDB and SQLite do differently about all of that:
//!   statement builders and catalogue answers, importing nothing above them.
//!
//! ```
//! use online_migration::backends::TableLock;
//! use online_migration::context::Context;
//! use online_migration::locks::{lock_in_order, with_lock_retries};
//! use sea_orm_migration::sea_orm::{ConnectionTrait, Database};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sea_orm_migration::DbErr> {
//! let db = Database::connect("sqlite::memory:").await?;
//! db.execute_unprepared("CREATE TABLE account (id INTEGER PRIMARY KEY)").await?;
//! let ctx = Context::default();
//! with_lock_retries(&ctx, &db, "adding a column to account", Default::default(), |txn| {
//!     Box::pin(async move {
//!         lock_in_order(txn, TableLock::access_exclusive("account"), &[]).await?;
//!         txn.execute_unprepared("ALTER TABLE account ADD COLUMN note TEXT").await?;
//!         Ok(())
//!     })
//! })
//! .await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod backends;
pub mod context;
pub mod data_guard;
pub mod ledger;
pub mod locks;
pub mod migrator_lock;
pub mod phase;
pub mod progress;
pub mod replicas;
pub mod runtime;
pub mod settings;
pub mod stop;
pub mod table_rows;
pub mod this_process;
