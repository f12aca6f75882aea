//! Whether a table holds rows, and how many.

use sea_orm_migration::prelude::*;

/// How many rows `table` holds.
pub async fn count<C: ConnectionTrait>(conn: &C, table: impl IntoIden) -> Result<u64, DbErr> {
    let query = Query::select()
        .expr(Expr::col(Asterisk).count())
        .from(table)
        .to_owned();
    let row = conn.query_one(&query).await?;
    let count: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
    Ok(<u64 as TryFrom<i64>>::try_from(count).unwrap_or(0))
}

/// Whether `table` holds any row.
pub async fn exist<C: ConnectionTrait>(conn: &C, table: impl IntoIden) -> Result<bool, DbErr> {
    let query = Query::select()
        .expr(Expr::val(1))
        .from(table)
        .limit(1)
        .to_owned();
    Ok(conn.query_one(&query).await?.is_some())
}
