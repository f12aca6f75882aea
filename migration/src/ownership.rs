//! Which tables the migrations created, as opposed to tables they found: an application's
//! own `workspace`, `job_agent` and `deployment`, or a join table another tool made for its
//! own version of this change. A table is recorded before it is created (a crash in between
//! leaves at worst a record of a table that is not there), and a `down` drops only tables on
//! record, so it never removes what someone else created.

use sea_orm_migration::prelude::*;

use crate::tables::CreatedTable;
use online_migration::table_rows;

/// The tables on record as created by the migrations; none when nothing is recorded (a
/// database migrated before the record existed).
pub async fn created(manager: &SchemaManager<'_>) -> Result<Vec<String>, DbErr> {
    if !manager.has_table(CreatedTable::Table.to_string()).await? {
        return Ok(vec![]);
    }
    let query = Query::select()
        .column(CreatedTable::TableName)
        .from(CreatedTable::Table)
        .to_owned();
    let rows = manager.get_connection().query_all(&query).await?;
    rows.iter().map(|row| row.try_get_by_index(0)).collect()
}

/// Records `tables` as created by the migrations (those already on record stay as they are).
pub async fn record(manager: &SchemaManager<'_>, tables: &[&str]) -> Result<(), DbErr> {
    let record = Table::create()
        .table(CreatedTable::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(CreatedTable::TableName)
                .string_len(64)
                .not_null()
                .primary_key(),
        )
        .to_owned();
    manager.create_table(record).await?;
    let known = created(manager).await?;
    let new: Vec<&&str> = (tables.iter())
        .filter(|table| !known.iter().any(|k| k == *table))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert();
    insert
        .into_table(CreatedTable::Table)
        .columns([CreatedTable::TableName]);
    for table in new {
        insert.values_panic([(*table).into()]);
    }
    manager.exec_stmt(insert).await
}

/// Takes `table` on before creating it: recorded, unless it exists already and someone
/// else's, which is refused when it holds rows (a `down` would drop them). An empty one
/// left by an interrupted run of the layout before the record existed is taken on.
pub async fn claim(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    let ours = created(manager).await?.iter().any(|t| t == table);
    if !ours
        && manager.has_table(table).await?
        && table_rows::exist(manager.get_connection(), Alias::new(table)).await?
    {
        return Err(DbErr::Migration(format!(
            "`{table}` exists, holds rows and was not created by this migration (another \
             tool's version of this change?); nothing was changed: see \"Adopting a database \
             another tool manages\" in the README"
        )));
    }
    record(manager, &[table]).await
}

/// Takes `table` off the record (it has been dropped).
pub async fn forget(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    if !manager.has_table(CreatedTable::Table.to_string()).await? {
        return Ok(());
    }
    let delete = Query::delete()
        .from_table(CreatedTable::Table)
        .and_where(Expr::col(CreatedTable::TableName).eq(table))
        .to_owned();
    manager.exec_stmt(delete).await
}

/// Drops the record itself (the baseline's `down`: nothing is left to know about).
pub async fn drop_record(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let drop = Table::drop()
        .table(CreatedTable::Table)
        .if_exists()
        .to_owned();
    manager.drop_table(drop).await
}
