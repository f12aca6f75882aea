//! Whether the connected role may run the migrations, asked before anything changes: a role
//! that lacks a privilege learns every missing one in a single message, instead of a
//! half-done `up` failing at its first DDL statement.

use sea_orm_migration::prelude::*;

use crate::backends;

/// What the connected role lacks of what the migrations need (empty when nothing).
pub async fn missing<C: ConnectionTrait>(conn: &C) -> Result<Vec<String>, DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let mut missing = vec![];
    for row in conn.query_all_raw(backend.missing_privileges()).await? {
        missing.push(row.try_get_by_index(0)?);
    }
    Ok(missing)
}

/// Fails with one message naming every missing privilege.
pub async fn require<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let missing = missing(conn).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(DbErr::Migration(format!(
        "the database role cannot run these migrations, nothing was changed; it lacks: {}",
        missing.join("; ")
    )))
}
