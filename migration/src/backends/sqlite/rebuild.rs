//! Dropping columns on SQLite by rebuilding the table.
//!
//! SQLite refuses `DROP COLUMN` for a column in a foreign key or index, so the legacy
//! columns go the documented way: create the new table, copy, drop the old one, rename.
//! With foreign keys enforced, dropping the old table would first delete every row that
//! references it through `ON DELETE CASCADE` (all the links), so enforcement is switched
//! off for the rebuild, checked to really be off, and switched back on afterwards. The new
//! table is described from SQLite's own catalogue (columns, primary key, foreign keys,
//! unique constraints, indexes) and, for what the catalogue does not hold (checks,
//! collations), from the table's statement as written (`table_sql`), so extra columns and
//! constraints of a hand-built table survive. A table check on a dropped column goes with
//! it.

use sea_orm_migration::prelude::*;

use super::table_sql::{ColumnClauses, TableClauses};
use sea_orm_migration::sea_orm::{
    DbBackend, SqliteTransactionMode, Statement, TransactionOptions, TransactionSession,
    TransactionTrait,
};

/// Removes `dropped` columns from `table`, keeping everything else. `first` runs inside the
/// rebuild's write transaction, before the copy (no other writer can get in between). Does
/// nothing when none of the columns is there any more, so a rerun is harmless.
pub async fn drop_columns<C, F>(
    conn: &C,
    table: &str,
    dropped: &[&str],
    first: F,
) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
    F: AsyncFnOnce(&C::Transaction) -> Result<(), DbErr>,
{
    let columns = table_columns(conn, table).await?;
    if !columns.iter().any(|c| dropped.contains(&c.name.as_str())) {
        return Ok(());
    }
    let last = async |_: &C::Transaction| Ok(());
    without_foreign_keys(
        conn,
        rebuild(conn, table, Change::Drop(dropped), first, last),
    )
    .await
}

/// Rebuilds `table` with `redefined` columns declared anew (name, whole declaration),
/// keeping everything else. Inside the rebuild's write transaction, `first` runs before the
/// table is read and copied (it may add the columns and fill them), `last` once the new table
/// has its name (triggers of the old one are gone with it).
pub async fn redefine_columns<C, F, L>(
    conn: &C,
    table: &str,
    redefined: &[(String, String)],
    first: F,
    last: L,
) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
    F: AsyncFnOnce(&C::Transaction) -> Result<(), DbErr>,
    L: AsyncFnOnce(&C::Transaction) -> Result<(), DbErr>,
{
    let change = Change::Redefine(redefined);
    without_foreign_keys(conn, rebuild(conn, table, change, first, last)).await
}

/// What a rebuild changes.
enum Change<'a> {
    Drop(&'a [&'a str]),
    Redefine(&'a [(String, String)]),
}

impl Change<'_> {
    fn drops(&self, column: &str) -> bool {
        matches!(self, Change::Drop(dropped) if dropped.contains(&column))
    }

    /// The column's declaration in the rebuilt table: as redefined, or as it was.
    fn definition(&self, column: &TableColumn, written: &ColumnClauses) -> String {
        match self {
            Change::Redefine(redefined) => (redefined.iter())
                .find(|(name, _)| *name == column.name)
                .map_or_else(
                    || column.definition(written),
                    |(_, definition)| definition.clone(),
                ),
            Change::Drop(_) => column.definition(written),
        }
    }

    fn dropped(&self) -> &[&str] {
        match self {
            Change::Drop(dropped) => dropped,
            Change::Redefine(_) => &[],
        }
    }
}

/// Runs `rebuild` with foreign keys off on this connection, and always turns them back on.
async fn without_foreign_keys<C: ConnectionTrait>(
    conn: &C,
    rebuild: impl std::future::Future<Output = Result<(), DbErr>>,
) -> Result<(), DbErr> {
    conn.execute_unprepared("PRAGMA foreign_keys = OFF").await?;
    let rebuilt = rebuild.await;
    let restored = conn.execute_unprepared("PRAGMA foreign_keys = ON").await;
    rebuilt.and(restored.map(|_| ()))
}

async fn rebuild<C, F, L>(
    conn: &C,
    table: &str,
    change: Change<'_>,
    first: F,
    last: L,
) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
    F: AsyncFnOnce(&C::Transaction) -> Result<(), DbErr>,
    L: AsyncFnOnce(&C::Transaction) -> Result<(), DbErr>,
{
    let immediate = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    let txn = conn.begin_with_options(immediate).await?;
    let enforced: i32 =
        query_rows(&txn, "PRAGMA foreign_keys", vec![]).await?[0].try_get_by_index(0)?;
    if enforced != 0 {
        return Err(DbErr::Migration(
            "SQLite still enforces foreign keys on the connection that would rebuild \
             `deployment`; connect with a single-connection pool (the default)"
                .to_owned(),
        ));
    }
    first(&txn).await?;
    let columns = table_columns(&txn, table).await?;
    let written = TableClauses::parse(&table_sql(&txn, table).await?);
    let dropped = change.dropped();
    let kept: Vec<&TableColumn> = columns.iter().filter(|c| !change.drops(&c.name)).collect();
    let staging = format!("{table}__rebuild");
    let mut definition: Vec<String> = (kept.iter())
        .map(|c| change.definition(c, &written.column(&c.name)))
        .collect();
    definition.extend(primary_key(&kept));
    definition.extend(written.checks_without(dropped));
    definition.extend(foreign_keys(&txn, table, dropped).await?);
    let indexes = indexes(&txn, table, dropped).await?;
    definition.extend(indexes.unique_constraints);
    let names = kept
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");

    let statements = [
        format!(
            "CREATE TABLE {} ({})",
            quote(&staging),
            definition.join(", ")
        ),
        format!(
            "INSERT INTO {} ({names}) SELECT {names} FROM {}",
            quote(&staging),
            quote(table)
        ),
        format!("DROP TABLE {}", quote(table)),
        format!("ALTER TABLE {} RENAME TO {}", quote(&staging), quote(table)),
    ];
    for sql in statements.iter().chain(&indexes.create_statements) {
        txn.execute_unprepared(sql).await?;
        crate::fault::crash_point!("sqlite rebuild: statement");
    }
    last(&txn).await?;
    let violations = query_rows(&txn, "PRAGMA foreign_key_check", vec![]).await?;
    if !violations.is_empty() {
        return Err(DbErr::Migration(format!(
            "rebuilding `{table}` would leave {} foreign key violations; nothing was changed",
            violations.len()
        )));
    }
    txn.commit().await
}

/// A column as `pragma_table_info` describes it.
pub struct TableColumn {
    pub name: String,
    declared_type: String,
    not_null: bool,
    default: Option<String>,
    primary_key_position: i32,
}

impl TableColumn {
    /// Its declaration: what the pragma says, and the clauses only the table's statement
    /// holds (collation, checks).
    fn definition(&self, written: &ColumnClauses) -> String {
        let mut sql = quote(&self.name);
        if !self.declared_type.is_empty() {
            sql.push(' ');
            sql.push_str(&self.declared_type);
        }
        if self.not_null {
            sql.push_str(" NOT NULL");
        }
        if let Some(default) = &self.default {
            // The catalogue keeps the default as the SQL text it was declared with.
            sql.push_str(" DEFAULT ");
            sql.push_str(default);
        }
        for clause in [&written.collation, &written.checks].into_iter().flatten() {
            sql.push(' ');
            sql.push_str(clause);
        }
        sql
    }
}

/// The table's `CREATE TABLE` statement as SQLite keeps it.
async fn table_sql<C: ConnectionTrait>(conn: &C, table: &str) -> Result<String, DbErr> {
    let sql = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?";
    let rows = query_rows(conn, sql, vec![table.into()]).await?;
    match rows.first() {
        Some(row) => row.try_get_by_index(0),
        None => Err(DbErr::Migration(format!("table `{table}` not found"))),
    }
}

pub async fn table_columns<C: ConnectionTrait>(
    conn: &C,
    table: &str,
) -> Result<Vec<TableColumn>, DbErr> {
    let sql =
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid";
    let rows = query_rows(conn, sql, vec![table.into()]).await?;
    rows.iter()
        .map(|row| {
            Ok(TableColumn {
                name: row.try_get_by_index(0)?,
                declared_type: row.try_get_by_index(1)?,
                not_null: row.try_get_by_index::<i32>(2)? != 0,
                default: row.try_get_by_index(3)?,
                primary_key_position: row.try_get_by_index(4)?,
            })
        })
        .collect()
}

fn primary_key(columns: &[&TableColumn]) -> Option<String> {
    let mut key: Vec<&&TableColumn> = columns
        .iter()
        .filter(|c| c.primary_key_position > 0)
        .collect();
    key.sort_by_key(|c| c.primary_key_position);
    (!key.is_empty()).then(|| {
        let names: Vec<String> = key.iter().map(|c| quote(&c.name)).collect();
        format!("PRIMARY KEY ({})", names.join(", "))
    })
}

/// A foreign key as `pragma_foreign_key_list` describes it (one row per column).
struct ForeignKeyDef {
    id: i32,
    parent: String,
    from: Vec<String>,
    /// `None` means the parent's primary key.
    to: Vec<Option<String>>,
    on_update: String,
    on_delete: String,
}

impl ForeignKeyDef {
    fn clause(&self) -> String {
        let from: Vec<String> = self.from.iter().map(|c| quote(c)).collect();
        let to: Vec<String> = self.to.iter().flatten().map(|c| quote(c)).collect();
        let to = match to.is_empty() {
            true => String::new(),
            false => format!(" ({})", to.join(", ")),
        };
        format!(
            "FOREIGN KEY ({}) REFERENCES {}{to} ON UPDATE {} ON DELETE {}",
            from.join(", "),
            quote(&self.parent),
            self.on_update,
            self.on_delete
        )
    }
}

/// The table's foreign keys, except those on a dropped column.
async fn foreign_keys(
    txn: &impl ConnectionTrait,
    table: &str,
    dropped: &[&str],
) -> Result<Vec<String>, DbErr> {
    let sql = "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete \
               FROM pragma_foreign_key_list(?) ORDER BY id, seq";
    let mut keys: Vec<ForeignKeyDef> = vec![];
    for row in query_rows(txn, sql, vec![table.into()]).await? {
        let id: i32 = row.try_get_by_index(0)?;
        if keys.last().is_none_or(|k| k.id != id) {
            keys.push(ForeignKeyDef {
                id,
                parent: row.try_get_by_index(1)?,
                from: vec![],
                to: vec![],
                on_update: row.try_get_by_index(4)?,
                on_delete: row.try_get_by_index(5)?,
            });
        }
        let key = keys.last_mut().expect("pushed above");
        key.from.push(row.try_get_by_index(2)?);
        key.to.push(row.try_get_by_index(3)?);
    }
    Ok(keys
        .iter()
        .filter(|k| !k.from.iter().any(|c| dropped.contains(&c.as_str())))
        .map(ForeignKeyDef::clause)
        .collect())
}

struct TableIndexes {
    /// `UNIQUE (…)` clauses for unique constraints declared in the table.
    unique_constraints: Vec<String>,
    /// `CREATE INDEX` statements to run again after the rename.
    create_statements: Vec<String>,
}

/// The table's indexes and unique constraints, except those that cover a dropped column.
async fn indexes(
    txn: &impl ConnectionTrait,
    table: &str,
    dropped: &[&str],
) -> Result<TableIndexes, DbErr> {
    let sql = "SELECT l.name, l.origin, m.sql FROM pragma_index_list(?) l \
               LEFT JOIN sqlite_master m ON m.type = 'index' AND m.name = l.name";
    let mut found = TableIndexes {
        unique_constraints: vec![],
        create_statements: vec![],
    };
    for row in query_rows(txn, sql, vec![table.into()]).await? {
        let name: String = row.try_get_by_index(0)?;
        let origin: String = row.try_get_by_index(1)?;
        let create: Option<String> = row.try_get_by_index(2)?;
        let columns: Vec<Option<String>> = query_rows(
            txn,
            "SELECT name FROM pragma_index_info(?) ORDER BY seqno",
            vec![name.into()],
        )
        .await?
        .iter()
        .map(|r| r.try_get_by_index(0))
        .collect::<Result<_, _>>()?;
        if columns
            .iter()
            .flatten()
            .any(|c| dropped.contains(&c.as_str()))
        {
            continue;
        }
        match (origin.as_str(), create) {
            ("u", _) => {
                let names: Vec<String> = columns.iter().flatten().map(|c| quote(c)).collect();
                found
                    .unique_constraints
                    .push(format!("UNIQUE ({})", names.join(", ")));
            }
            (_, Some(create)) => found.create_statements.push(create),
            _ => {}
        }
    }
    Ok(found)
}

async fn query_rows<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<sea_orm_migration::sea_orm::QueryResult>, DbErr> {
    conn.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        values,
    ))
    .await
}

/// An SQLite identifier, quoted.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
