//! PostgreSQL: a session advisory lock, on a connection taken out of the pool so that no
//! other work ever runs on (or returns to the pool with) the session that holds it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::sqlx::{self, Connection};
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseExecutor, Statement,
};

/// The session that holds the lock.
pub(super) struct Session(sqlx::PgConnection);

impl Session {
    /// One attempt on a session of its own; `None` while another session holds it.
    /// `key`: the migration's advisory lock ([`crate::ledger::Ledger::advisory_key`]).
    pub(super) async fn try_lock(
        db: &DatabaseConnection,
        key: i64,
    ) -> Result<Option<Session>, DbErr> {
        let pool = db.get_postgres_connection_pool();
        let mut conn = pool.acquire().await.map_err(lock_error)?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .map_err(lock_error)?;
        if locked {
            return Ok(Some(Session(conn)));
        }
        let _ = conn.close().await;
        Ok(None)
    }

    /// Ends the session, and the lock with it.
    pub(super) async fn close(self) {
        if let Err(error) = self.0.close().await {
            tracing::debug!("closing the migrator lock's session: {error}");
        }
    }
}

/// Inside a transaction the caller passed: the transaction holds the lock until it ends.
pub(super) async fn try_lock_in_transaction(
    db: &DatabaseExecutor<'_>,
    key: i64,
) -> Result<bool, DbErr> {
    let statement = Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT pg_try_advisory_xact_lock($1)",
        [key.into()],
    );
    let row = db.query_one_raw(statement).await?;
    let row = row.ok_or_else(|| DbErr::Migration("pg_try_advisory_xact_lock: no row".into()))?;
    row.try_get_by_index(0)
}

fn lock_error(error: sqlx::Error) -> DbErr {
    DbErr::Migration(format!(
        "the migrator lock (PostgreSQL advisory lock): {error}"
    ))
}
