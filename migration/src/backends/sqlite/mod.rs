//! SQLite: one writer at a time for the whole file; the driver's `busy_timeout` bounds the
//! wait for it, and nothing else can be asked from another connection.

pub mod rebuild;
mod sync;
mod table_sql;

use sea_orm_migration::prelude::{Alias, Expr, Func};
use sea_orm_migration::sea_orm::{DbBackend, DbErr, QueryResult, Statement};

use super::{Catalogue, ColumnDdl, ConstraintStep, JoinTableLoad, SyncTarget, Triggers, Values};
use crate::backends::column_decl::ColumnDecl;
use crate::ids::StoredId;
use crate::tables::{
    CAPTURE_INSERT_TRIGGER, CAPTURE_UPDATE_TRIGGER, DEPLOYMENT, JOB_AGENT_ID_INDEX, JOIN_TABLE,
    LEGACY_COLUMNS, PENDING_TABLE,
};

pub struct Sqlite;

impl Catalogue for Sqlite {
    fn legacy_column_definitions(&self) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT c.name, c.type, c.\"notnull\", c.dflt_value, \
               (SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?), NULL, \
               k.\"table\", k.\"to\", k.on_delete \
             FROM pragma_table_info(?) c \
             LEFT JOIN pragma_foreign_key_list(?) k ON k.\"from\" = c.name \
             WHERE c.name IN (?, ?, ?)",
            [DEPLOYMENT, DEPLOYMENT, DEPLOYMENT]
                .into_iter()
                .chain(LEGACY_COLUMNS)
                .map(Into::into),
        )
    }

    /// SQLite answers with the table's statement: the column's clauses that its pragmas do
    /// not give (checks, collation) are read out of it, as written.
    fn recorded_check(&self, column: &str, answered: Option<String>) -> Option<String> {
        let clauses = table_sql::TableClauses::parse(&answered?).column(column);
        let written: Vec<String> = [clauses.collation, clauses.checks]
            .into_iter()
            .flatten()
            .collect();
        (!written.is_empty()).then(|| written.join(" "))
    }

    fn trigger_exists(&self, name: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name = ?",
            [DEPLOYMENT.into(), name.into()],
        )
    }

    fn missing_privileges(&self) -> Statement {
        Statement::from_string(DbBackend::Sqlite, "SELECT '' WHERE 0")
    }

    fn declared_type(&self, table: &str, column: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT type FROM pragma_table_info(?) WHERE name = ?",
            [table.into(), column.into()],
        )
    }
}

impl Values for Sqlite {
    fn json_type(&self) -> &'static str {
        "json_text"
    }

    /// Ids may be text or blobs in the same column: their storage class is read too.
    fn select_id(&self, column: Expr) -> Vec<Expr> {
        vec![
            Func::cust(Alias::new("typeof")).arg(column.clone()).into(),
            Func::cast_as(column, Alias::new("BLOB")).into(),
        ]
    }

    fn read_id(&self, row: &QueryResult, index: &mut usize) -> Result<Option<StoredId>, DbErr> {
        let storage: String = row.try_get_by_index(*index)?;
        let bytes: Option<Vec<u8>> = row.try_get_by_index(*index + 1)?;
        *index += 2;
        Ok(bytes.map(|bytes| match storage.as_str() {
            "blob" => StoredId::Bytes(bytes),
            _ => StoredId::Text(String::from_utf8_lossy(&bytes).into_owned()),
        }))
    }

    fn select_json_text(&self, column: Expr) -> Expr {
        Func::cast_as(column, Alias::new("TEXT")).into()
    }
}

impl ColumnDdl for Sqlite {
    /// SQLite adds a foreign key only inline with its column.
    fn add_legacy_column(&self, column: &ColumnDecl) -> Vec<String> {
        let mut sql = format!(
            "ALTER TABLE {DEPLOYMENT} ADD COLUMN {} {}",
            quote(&column.name),
            column.declared_type
        );
        if let Some(key) = &column.foreign_key {
            sql.push_str(&format!(
                " REFERENCES {} ({}) ON DELETE {}",
                quote(&key.table),
                quote(&key.column),
                key.on_delete
            ));
        }
        vec![sql]
    }

    /// SQLite cannot alter a column: `NOT NULL` and defaults come back with a table rebuild
    /// (see `rebuild::redefine_columns` and [`column_definition`]).
    fn restore_constraints(&self, _column: &ColumnDecl) -> Vec<ConstraintStep> {
        vec![]
    }
}

impl Triggers for Sqlite {
    fn capture_triggers(&self) -> Vec<String> {
        let pending = PENDING_TABLE;
        vec![
            format!(
                "CREATE TRIGGER IF NOT EXISTS {CAPTURE_INSERT_TRIGGER} \
                 AFTER INSERT ON {DEPLOYMENT} BEGIN \
                   INSERT OR IGNORE INTO {pending} (deployment_id) \
                   VALUES (NEW.id); \
                 END"
            ),
            format!(
                "CREATE TRIGGER IF NOT EXISTS {CAPTURE_UPDATE_TRIGGER} \
                 AFTER UPDATE ON {DEPLOYMENT} \
                 WHEN OLD.id IS NOT NEW.id COLLATE BINARY \
                   OR OLD.workspace_id IS NOT NEW.workspace_id COLLATE BINARY \
                   OR OLD.job_agents IS NOT NEW.job_agents COLLATE BINARY \
                   OR OLD.job_agent_id IS NOT NEW.job_agent_id COLLATE BINARY \
                   OR OLD.job_agent_config IS NOT NEW.job_agent_config COLLATE BINARY \
                 BEGIN \
                   INSERT OR IGNORE INTO {pending} (deployment_id) \
                   VALUES (NEW.id); \
                 END"
            ),
        ]
    }

    fn remove_capture_triggers(&self) -> Vec<String> {
        vec![
            format!("DROP TRIGGER IF EXISTS {CAPTURE_INSERT_TRIGGER}"),
            format!("DROP TRIGGER IF EXISTS {CAPTURE_UPDATE_TRIGGER}"),
        ]
    }

    fn sync_triggers(&self, _target: &SyncTarget) -> Vec<String> {
        sync::install()
    }

    fn remove_sync_triggers(&self, _target: &SyncTarget) -> Vec<String> {
        sync::remove()
    }

    /// A row in the guard table (created here if the sync is not installed yet), written in
    /// the transaction (SQLite has one writer at a time) and deleted before it commits.
    fn sync_guard(&self) -> Vec<Statement> {
        let guard = sync::guard();
        [
            format!("CREATE TABLE IF NOT EXISTS {guard} (active INTEGER NOT NULL)"),
            format!(
                "INSERT INTO {guard} (active) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {guard})"
            ),
        ]
        .map(|sql| Statement::from_string(DbBackend::Sqlite, sql))
        .into()
    }

    fn sync_unguard(&self) -> Vec<Statement> {
        let sql = format!("DELETE FROM {}", sync::guard());
        vec![Statement::from_string(DbBackend::Sqlite, sql)]
    }
}

impl JoinTableLoad for Sqlite {
    /// Only this connection stops checking: another writer's deletes still cascade, and each
    /// batch reads and writes in one write transaction, so no link can lose its parent in
    /// between. Every link is checked afterwards ([`JoinTableLoad::links_breaking_keys`]).
    fn load_without_checks(&self) -> Vec<String> {
        vec![
            "PRAGMA foreign_keys = OFF".to_owned(),
            format!("DROP INDEX IF EXISTS {JOB_AGENT_ID_INDEX}"),
        ]
    }

    fn builds_index_after_load(&self) -> bool {
        true
    }

    fn has_row_locks(&self) -> bool {
        false
    }

    fn check_keys_again(&self) -> Vec<String> {
        vec!["PRAGMA foreign_keys = ON".to_owned()]
    }

    fn links_breaking_keys(&self) -> Option<Statement> {
        let sql = "SELECT COUNT(*) FROM pragma_foreign_key_check($1)";
        Some(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            [JOIN_TABLE.into()],
        ))
    }
}

/// A legacy column's whole declaration, for a rebuilt table (its foreign key is kept by the
/// rebuild from the catalogue; its checks and collation are recorded as written).
pub fn column_definition(column: &ColumnDecl) -> String {
    let mut sql = format!("{} {}", quote(&column.name), column.declared_type);
    if column.not_null {
        sql.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        sql.push_str(&format!(" DEFAULT {default}"));
    }
    if let Some(clauses) = &column.check {
        sql.push_str(&format!(" {clauses}"));
    }
    sql
}

/// An SQLite identifier, quoted.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
