//! What PostgreSQL, MariaDB/MySQL and SQLite do differently when a migration shares the
//! database with a live application: how a transaction bounds its lock waits, which errors
//! mean "lost a race for a lock, try again", and how to name the session in the way.
//!
//! One implementation per backend behind [`Backend`]; [`of`] is the one place that picks it.
//! Every statement here is fixed text with bound values.

pub mod column_decl;
pub mod mysql;
pub mod postgres;
#[cfg(test)]
mod snapshots;
pub mod sqlite;
mod template;

use sea_orm_migration::prelude::{ConnectionTrait, Expr, IntoIden};
use sea_orm_migration::sea_orm::{DbBackend, DbErr, QueryResult, Statement};

use crate::ids::StoredId;
use column_decl::ColumnDecl;
pub use online_migration::backends::{ConstraintStep, TableLock};

/// What the expand phase's triggers are generated for: where the tables are, and how the
/// ids and legacy columns are declared (the triggers' SQL names these types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTarget {
    /// PostgreSQL: the schema, as a quoted identifier; empty elsewhere.
    pub schema: String,
    /// `deployment.id`'s declared type.
    pub deployment_id_type: String,
    /// `job_agent.id`'s declared type.
    pub job_agent_id_type: String,
    /// `deployment.workspace_id`'s declared type.
    pub deployment_workspace_id_type: String,
    /// `deployment.job_agent_id`'s declared type.
    pub legacy_job_agent_id_type: String,
    /// `job_agent.workspace_id`'s declared type.
    pub job_agent_workspace_id_type: String,
    /// `deployment.job_agents`'s declared type.
    pub job_agents_type: String,
    /// `deployment.job_agent_config`'s declared type.
    pub job_agent_config_type: String,
}

/// What the catalogue says: declared types and columns, triggers, tables, privileges, the
/// schema, the cluster.
pub trait Catalogue {
    /// How the legacy columns are declared now, one row each, in the column order of
    /// [`crate::legacy_columns::ColumnDecl`]'s record: name, type, not null (0/1),
    /// default, check, foreign key name, parent table, parent column, `ON DELETE` rule.
    fn legacy_column_definitions(&self) -> Statement;

    /// A legacy column's checks as the record keeps them, from what
    /// [`Self::legacy_column_definitions`] answered: MariaDB's clause
    /// (`json_valid(`c`)`), PostgreSQL's JSON array of `[name, definition]`; SQLite answers
    /// with the table's statement and keeps the column's clauses as written.
    fn recorded_check(&self, _column: &str, answered: Option<String>) -> Option<String> {
        answered
    }

    /// A query that returns a row when the server is a node of a cluster that changes what
    /// the migration does, and the note the log gets then; `None` where there is no such
    /// cluster.
    fn cluster_note(&self) -> Option<(Statement, &'static str)> {
        None
    }

    /// One row when trigger `name` exists on `deployment` (in the current schema), none
    /// otherwise.
    fn trigger_exists(&self, name: &str) -> Statement;

    /// One row, one text: the current schema as a quoted identifier, where tables live in
    /// schemas the triggers must name.
    fn current_schema(&self) -> Option<Statement> {
        None
    }

    /// What the connected role lacks of what the migrations need, one description per row;
    /// no rows when nothing is missing (or the backend has no privileges, like SQLite).
    fn missing_privileges(&self) -> Statement;

    /// The declared type of a column, one row with one text column; binds the table's name,
    /// then the column's.
    fn declared_type(&self, table: &str, column: &str) -> Statement;
}

/// How ids, JSON and text are declared, read and written.
pub trait Values {
    /// The baseline's JSON column type.
    fn json_type(&self) -> &'static str;

    /// The default the baseline gives `deployment.id`, where the server can generate a
    /// UUID itself; `None` where the application always supplies it.
    fn generated_id_default(&self) -> Option<&'static str> {
        None
    }

    /// `text` as an SQL string literal (for the baseline's fixed defaults).
    fn string_literal(&self, text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }

    /// Expressions that select id column `column` so that [`Values::read_id`] can decode it
    /// (one, unless the backend needs more to tell how the id is stored).
    fn select_id(&self, column: Expr) -> Vec<Expr> {
        vec![column]
    }

    /// Decodes an id selected with [`Values::select_id`], starting at column `*index`
    /// (advanced past it).
    fn read_id(&self, row: &QueryResult, index: &mut usize) -> Result<Option<StoredId>, DbErr>;

    /// Selects JSON column `column` as its stored text.
    fn select_json_text(&self, column: Expr) -> Expr {
        column
    }

    /// A bound JSON value, written as exactly this text.
    fn json_value(&self, text: String) -> Expr {
        Expr::val(text)
    }
}

/// The DDL that gives the legacy columns back as they were declared.
pub trait ColumnDdl {
    /// Statements that add `column` back nullable, without default, with its foreign key
    /// (which every row satisfies while the column is NULL): instant on a large table.
    fn add_legacy_column(&self, column: &ColumnDecl) -> Vec<String>;

    /// The steps that give a refilled legacy column its default, `NOT NULL` and a checked
    /// foreign key, each holding a strong lock for an instant at most.
    fn restore_constraints(&self, column: &ColumnDecl) -> Vec<ConstraintStep>;
}

/// The triggers on tables the application writes: the capture, the expand phase's sync and
/// its guard, and how trigger DDL is run beside prepared statements.
pub trait Triggers {
    /// Statements that install the capture triggers on `deployment` (see
    /// `backfill::capture`). An update is recorded only when it changes a column the rules
    /// read (`id`, `workspace_id` and the three legacy columns): the application's other
    /// writes (renames, selectors) then cost the drop step's critical section nothing.
    /// Values are compared as text or bytes, so a change of case in a JSON string counts
    /// whatever the column's type or collation.
    fn capture_triggers(&self) -> Vec<String>;

    /// Statements that make the capture record every update of `deployment` and read no
    /// legacy column, so the columns can be renamed while the capture is still on (a trigger
    /// that reads a renamed column fails every update). Only MariaDB's drop step renames
    /// them (its DDL commits statement by statement); elsewhere the drop step is one
    /// transaction and this is empty.
    fn capture_every_update(&self) -> Vec<String> {
        vec![]
    }

    /// Statements that remove what [`Triggers::capture_triggers`] installed.
    fn remove_capture_triggers(&self) -> Vec<String>;

    /// Statements that stop the capture from recording, keeping what it recorded, without
    /// locking `deployment` where the backend can (the triggers then go with the drop
    /// step); `None` where only dropping the triggers stops it.
    fn silence_capture(&self) -> Option<Vec<String>> {
        None
    }

    /// Trigger DDL on tables the application writes, as locked steps (each a list of
    /// statements run under the lock timeout, retried alone): the DDL itself, made so that
    /// the application's statements prepared before it see every new trigger. Here one step;
    /// MariaDB's `live_triggers` says what it takes there.
    fn live_trigger_steps(&self, ddl: Vec<String>) -> Vec<Vec<String>> {
        match ddl.is_empty() {
            true => vec![],
            false => vec![ddl],
        }
    }

    /// The statements that install the expand phase's triggers (see `crate::expand`): a
    /// legacy write applied to the links by the rules, a link write applied to the legacy
    /// columns, each in the writer's transaction, neither writing back. Safe to run again.
    fn sync_triggers(&self, target: &SyncTarget) -> Vec<String>;

    /// One row, one number: 1 when the routines [`Triggers::sync_triggers`] creates are all
    /// in place as it would create them, so an install may leave them alone (MariaDB, where
    /// replacing a routine waits for every transaction that called it). `None`: always
    /// create them.
    fn sync_routines_in_place(&self, target: &SyncTarget) -> Option<Statement> {
        let _ = target;
        None
    }

    /// The statements that remove what [`Triggers::sync_triggers`] installed.
    fn remove_sync_triggers(&self, target: &SyncTarget) -> Vec<String>;

    /// Statements that make the current transaction's own writes to either side leave the
    /// other alone (the migration's backfill and refill write both sides themselves).
    fn sync_guard(&self) -> Vec<Statement>;

    /// Statements that end [`Triggers::sync_guard`] before the transaction commits, where it
    /// would outlive it. (Should the transaction fail first, the guard goes with it, or, for
    /// a session variable, with [`Triggers::session_reset`].)
    fn sync_unguard(&self) -> Vec<Statement> {
        vec![]
    }

    /// Statements that reset what the migration's steps may leave in a session where it
    /// outlives the transaction (MariaDB's sync guard, a session variable): every locked step
    /// runs them before its connection goes back to the pool, committed or not
    /// (`Context::with_session_reset`).
    fn session_reset(&self) -> Vec<Statement> {
        vec![]
    }
}

/// How the join table is created and loaded: what it goes without during the load and gets
/// back after, and how a page's rows are read.
pub trait JoinTableLoad {
    /// Statements that make this connection load the join table without checking its
    /// foreign keys or keeping its reverse index up to date (both come back in one pass
    /// after the load). Where the backend keeps them during the load, none.
    fn load_without_checks(&self) -> Vec<String> {
        vec![]
    }

    /// Whether the join table is created bare (no foreign keys, no reverse index), to get
    /// them only after the backfill. Declaring a foreign key locks the parent; where a hot
    /// standby replays such locks behind its readers, nothing on a parent is locked before
    /// the final step.
    fn join_table_starts_bare(&self) -> bool {
        false
    }

    /// Whether an index is declared inside `CREATE TABLE` (one DDL statement instead of two).
    fn index_inside_create_table(&self) -> bool {
        false
    }

    /// Whether a reader can lock the rows it reads against other sessions' writes (where it
    /// cannot, one writer at a time keeps the others out anyway).
    fn has_row_locks(&self) -> bool {
        true
    }

    /// Whether the join table's reverse index is built after the load (it was created
    /// without it, or [`JoinTableLoad::load_without_checks`] dropped it).
    fn builds_index_after_load(&self) -> bool {
        false
    }

    /// A query with a row when the join table has foreign key `name`; `None` where the join
    /// table keeps its keys throughout (or checks them another way).
    fn join_table_has_key(&self, _name: &str) -> Option<Statement> {
        None
    }

    /// The steps that give the loaded join table foreign key `name` on `column`, to
    /// `parent`'s `id`, without blocking the parent's readers.
    fn join_table_key_steps(
        &self,
        _name: &str,
        _column: &str,
        _parent: &'static str,
    ) -> Vec<ConstraintStep> {
        vec![]
    }

    /// Statements that check foreign keys again on this connection after the load.
    fn check_keys_again(&self) -> Vec<String> {
        vec![]
    }

    /// A count of the links that break a foreign key, where the load went unchecked.
    fn links_breaking_keys(&self) -> Option<Statement> {
        None
    }

    /// Statements that give the planner fresh statistics for the join table after the load,
    /// where the server would otherwise plan from an empty table's figures for a while.
    fn refresh_join_table_statistics(&self) -> Vec<String> {
        vec![]
    }

    /// Whether a backfill page must keep its rows locked against updates and deletes until
    /// its transaction ends: MariaDB/MySQL, where a deployment deleted between the read and
    /// the insert of its links would fail the insert's foreign key. (PostgreSQL checks the
    /// keys after the load instead; SQLite's write transaction keeps other writers out.)
    fn locks_page_rows(&self) -> bool {
        false
    }
}

/// One backend's answers, every concern (see the traits above): what [`of`] returns.
pub trait Backend: Catalogue + Values + ColumnDdl + Triggers + JoinTableLoad + Send + Sync {}

impl<T> Backend for T where
    T: Catalogue + Values + ColumnDdl + Triggers + JoinTableLoad + Send + Sync
{
}

/// Whether `sql` creates or drops a trigger (the scripts' other statements define routines
/// and scratch tables), whatever comment lines come first.
pub fn is_trigger_ddl(sql: &str) -> bool {
    let (_, code) = split_leading_comments(sql);
    let mut words = code.split_whitespace();
    (words.by_ref().take(4)).any(|word| word.eq_ignore_ascii_case("TRIGGER"))
}

/// `sql` as the comment lines (`-- …`) it opens with, and the statement after them.
pub fn split_leading_comments(sql: &str) -> (&str, &str) {
    let code_at: usize = (sql.split_inclusive('\n'))
        .take_while(|line| line.trim_start().starts_with("--"))
        .map(str::len)
        .sum();
    sql.split_at(code_at)
}

/// The implementation for `backend`.
pub fn of(backend: DbBackend) -> &'static dyn Backend {
    match backend {
        DbBackend::Postgres => &postgres::Postgres,
        DbBackend::Sqlite => &sqlite::Sqlite,
        _ => &mysql::MySql,
    }
}

/// Says in the log when the server is a node of a cluster the migration treats differently
/// ([`Catalogue::cluster_note`]).
pub async fn log_cluster_note<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let Some((query, note)) = of(conn.get_database_backend()).cluster_note() else {
        return Ok(());
    };
    if conn.query_one_raw(query).await?.is_some() {
        tracing::info!("{note}");
    }
    Ok(())
}

/// The name a legacy column's foreign key gets back: its recorded one, or the baseline's.
pub fn foreign_key_name(column: &ColumnDecl) -> String {
    (column.foreign_key.as_ref())
        .and_then(|key| key.name.clone())
        .unwrap_or_else(|| format!("fk_deployment_{}", column.name))
}

/// Expressions that select id column `column` of `table` so that [`read_id`] can decode it.
pub fn select_id(backend: DbBackend, table: impl IntoIden, column: impl IntoIden) -> Vec<Expr> {
    of(backend).select_id(Expr::col((table.into_iden(), column.into_iden())))
}

/// Decodes an id selected with [`select_id`], starting at column `*index` (advanced past it).
pub fn read_id(
    backend: DbBackend,
    row: &QueryResult,
    index: &mut usize,
) -> Result<Option<StoredId>, DbErr> {
    of(backend).read_id(row, index)
}

/// Selects JSON column `column` of `table` as its stored text.
pub fn select_json_text(backend: DbBackend, table: impl IntoIden, column: impl IntoIden) -> Expr {
    of(backend).select_json_text(Expr::col((table.into_iden(), column.into_iden())))
}

/// A bound JSON value, written as exactly this text.
pub fn json_value(backend: DbBackend, text: String) -> Expr {
    of(backend).json_value(text)
}

/// The declared type of `table.column`, for a new column that must hold the same values
/// (a foreign key to it, on MariaDB, must match its type, character set and collation).
/// Only text that reads as a plain type name is returned: it goes into DDL.
pub async fn column_type<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    column: &str,
) -> Result<String, DbErr> {
    let statement = of(conn.get_database_backend()).declared_type(table, column);
    let row = conn
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| DbErr::Migration(format!("table `{table}` has no column `{column}`")))?;
    let declared: String = row.try_get_by_index(0)?;
    let declared = match declared.trim() {
        // An untyped SQLite column has no affinity; BLOB declares the same.
        "" => "BLOB".to_owned(),
        declared => declared.to_owned(),
    };
    if !is_plain_type_name(&declared) {
        return Err(DbErr::Migration(format!(
            "column `{table}.{column}` has a type this migration cannot copy: {declared:?}"
        )));
    }
    Ok(declared)
}

/// A type as information schemas print them: words, digits, parentheses, commas.
pub(crate) fn is_plain_type_name(declared: &str) -> bool {
    declared
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '(' | ')' | ','))
}

#[cfg(test)]
mod tests {
    use super::{is_plain_type_name, is_trigger_ddl};

    #[test]
    fn trigger_statements_are_told_from_routines_whatever_comes_first() {
        for trigger in [
            "CREATE TRIGGER t AFTER INSERT ON d FOR EACH ROW SELECT 1",
            "-- Why this trigger.\n-- More why.\nCREATE OR REPLACE TRIGGER t BEFORE INSERT ON d",
            "DROP TRIGGER IF EXISTS t ON d",
        ] {
            assert!(is_trigger_ddl(trigger), "{trigger}");
        }
        for other in [
            "CREATE OR REPLACE FUNCTION f() RETURNS trigger AS $$ SELECT 1 $$",
            "-- Fires no trigger.\nCREATE TABLE IF NOT EXISTS scratch (n int)",
            "CREATE OR REPLACE PROCEDURE p() BEGIN CREATE TRIGGER x; END",
        ] {
            assert!(!is_trigger_ddl(other), "{other}");
        }
    }

    #[test]
    fn declared_types_are_accepted_and_anything_else_refused() {
        for ok in [
            "uuid",
            "binary(16)",
            "char(36) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        ] {
            assert!(is_plain_type_name(ok), "{ok}");
        }
        for bad in ["text); DROP TABLE x; --", "varchar(36) DEFAULT 'x'", "a\"b"] {
            assert!(!is_plain_type_name(bad), "{bad}");
        }
    }
}
