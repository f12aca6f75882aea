//! MariaDB/MySQL: lock waits are session variables in whole seconds; errors by number;
//! blockers are the other open transactions (the processlist has no lock graph without the
//! `metadata_lock_info` plugin).

mod live_triggers;
mod sync;

use sea_orm_migration::sea_orm::{DbBackend, DbErr, QueryResult, Statement};

use super::{
    Catalogue, ColumnDdl, ConstraintStep, JoinTableLoad, SyncTarget, Triggers, Values,
    foreign_key_name,
};
use crate::backends::column_decl::ColumnDecl;
use crate::ids::StoredId;
use crate::tables::{
    CAPTURE_INSERT_TRIGGER, CAPTURE_UPDATE_TRIGGER, DEPLOYMENT, LEGACY_COLUMNS, PENDING_TABLE,
};

pub struct MySql;

impl Catalogue for MySql {
    /// Galera (`wsrep_on`).
    fn cluster_note(&self) -> Option<(Statement, &'static str)> {
        let query = Statement::from_string(
            DbBackend::MySql,
            // MySQL has no such variable: no row, as on a MariaDB without Galera.
            "SHOW VARIABLES WHERE Variable_name = 'wsrep_on' AND Value = 'ON'",
        );
        let note = "Galera cluster (wsrep_on): each DDL statement runs in total order on every \
                    node; a batch that loses certification to another node's write is retried \
                    from that batch; the drop step takes no node-local lock (it renames the \
                    legacy columns, catches up, then drops them)";
        Some((query, note))
    }

    /// Each privilege the migrations use on the current database, granted to the user or its
    /// current role, globally, on the database, or on `deployment` itself.
    fn legacy_column_definitions(&self) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::MySql,
            "SELECT c.COLUMN_NAME, CONCAT_WS(' ', c.COLUMN_TYPE, \
                 CONCAT('CHARACTER SET ', c.CHARACTER_SET_NAME), \
                 CONCAT('COLLATE ', c.COLLATION_NAME)), \
               CAST(c.IS_NULLABLE = 'NO' AS SIGNED), c.COLUMN_DEFAULT, cc.CHECK_CLAUSE, \
               k.CONSTRAINT_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, \
               r.DELETE_RULE \
             FROM information_schema.COLUMNS c \
             LEFT JOIN information_schema.CHECK_CONSTRAINTS cc \
               ON cc.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND cc.TABLE_NAME = c.TABLE_NAME \
               AND cc.CONSTRAINT_NAME = c.COLUMN_NAME \
             LEFT JOIN information_schema.KEY_COLUMN_USAGE k \
               ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
               AND k.COLUMN_NAME = c.COLUMN_NAME AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             LEFT JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.TABLE_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
             WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ? \
               AND c.COLUMN_NAME IN (?, ?, ?)",
            [DEPLOYMENT]
                .into_iter()
                .chain(LEGACY_COLUMNS)
                .map(Into::into),
        )
    }

    fn trigger_exists(&self, name: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::MySql,
            "SELECT 1 FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() \
             AND EVENT_OBJECT_TABLE = ? AND TRIGGER_NAME = ?",
            [DEPLOYMENT.into(), name.into()],
        )
    }

    fn missing_privileges(&self) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::MySql,
            "SELECT CONCAT(needed.p, ' on database ', DATABASE()) FROM ( \
               SELECT 'SELECT' AS p UNION ALL SELECT 'INSERT' UNION ALL SELECT 'UPDATE' \
               UNION ALL SELECT 'DELETE' UNION ALL SELECT 'CREATE' UNION ALL SELECT 'DROP' \
               UNION ALL SELECT 'ALTER' UNION ALL SELECT 'INDEX' UNION ALL SELECT 'REFERENCES' \
               UNION ALL SELECT 'TRIGGER' ) AS needed, \
               (SELECT CONCAT(CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', 1), CHAR(39), \
                  '@', CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', -1), CHAR(39)) \
                AS grantee, \
                CONCAT(CHAR(39), CURRENT_ROLE(), CHAR(39), '@', CHAR(39), CHAR(39)) AS role) AS me \
             WHERE NOT EXISTS (SELECT 1 FROM information_schema.USER_PRIVILEGES u \
                 WHERE u.GRANTEE IN (me.grantee, me.role) AND u.PRIVILEGE_TYPE = needed.p) \
               AND NOT EXISTS (SELECT 1 FROM information_schema.SCHEMA_PRIVILEGES d \
                 WHERE d.GRANTEE IN (me.grantee, me.role) AND d.TABLE_SCHEMA = DATABASE() \
                   AND d.PRIVILEGE_TYPE = needed.p) \
               AND NOT EXISTS (SELECT 1 FROM information_schema.TABLE_PRIVILEGES t \
                 WHERE t.GRANTEE IN (me.grantee, me.role) AND t.TABLE_SCHEMA = DATABASE() \
                   AND t.TABLE_NAME = ? AND t.PRIVILEGE_TYPE = needed.p) \
             ORDER BY 1",
            [DEPLOYMENT.into()],
        )
    }

    fn declared_type(&self, table: &str, column: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::MySql,
            "SELECT CONCAT_WS(' ', COLUMN_TYPE, \
                CONCAT('CHARACTER SET ', CHARACTER_SET_NAME), CONCAT('COLLATE ', COLLATION_NAME)) \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?",
            [table.into(), column.into()],
        )
    }
}

impl Values for MySql {
    fn json_type(&self) -> &'static str {
        "json"
    }

    /// BINARY(16) comes back as 16 bytes; CHAR/VARCHAR/UUID columns as text, which is bound
    /// back as text so comparisons use the column's collation.
    fn read_id(&self, row: &QueryResult, index: &mut usize) -> Result<Option<StoredId>, DbErr> {
        let bytes = row.try_get_by_index::<Option<Vec<u8>>>(*index)?;
        *index += 1;
        Ok(bytes.map(|bytes| match String::from_utf8(bytes) {
            Ok(text) if text.len() != 16 => StoredId::Text(text),
            Ok(text) => StoredId::Bytes(text.into_bytes()),
            Err(not_text) => StoredId::Bytes(not_text.into_bytes()),
        }))
    }
}

impl ColumnDdl for MySql {
    /// Adding a foreign key copies the table unless foreign keys are not checked; every
    /// row of a new column is NULL, so there is nothing to check.
    fn add_legacy_column(&self, column: &ColumnDecl) -> Vec<String> {
        let name = quote(&column.name);
        let (declared_type, check) = type_and_check(column);
        let mut sql = format!(
            "ALTER TABLE {DEPLOYMENT} ADD COLUMN IF NOT EXISTS {name} {declared_type}{check}"
        );
        if let Some(key) = &column.foreign_key {
            // Added this way, an explicit `ON DELETE RESTRICT` is recorded as `NO ACTION`;
            // left out, it is recorded as the `RESTRICT` it means.
            let on_delete = match key.on_delete.as_str() {
                "RESTRICT" => String::new(),
                rule => format!(" ON DELETE {rule}"),
            };
            sql = format!(
                "SET STATEMENT foreign_key_checks = 0 FOR {sql}, ADD CONSTRAINT {} \
                 FOREIGN KEY ({name}) REFERENCES {} ({}){on_delete}",
                quote(&foreign_key_name(column)),
                quote(&key.table),
                quote(&key.column),
            );
        }
        vec![sql]
    }

    /// One `MODIFY COLUMN` with the whole declaration, its check included (`MODIFY` replaces
    /// a column's inline check with the one it declares, or none): InnoDB makes a `JSON`
    /// column `NOT NULL` in place, with writers going on, holding the metadata lock only at
    /// its ends. (A check of the operator's own, not `JSON`'s, makes MariaDB copy the table.)
    fn restore_constraints(&self, column: &ColumnDecl) -> Vec<ConstraintStep> {
        if !column.not_null && column.default.is_none() {
            return vec![];
        }
        let (declared_type, check) = type_and_check(column);
        let mut sql = format!(
            "ALTER TABLE {DEPLOYMENT} MODIFY COLUMN {} {declared_type}",
            quote(&column.name),
        );
        if column.not_null {
            sql.push_str(" NOT NULL");
        }
        if let Some(default) = &column.default {
            sql.push_str(&format!(" DEFAULT {default}"));
        }
        sql.push_str(&check);
        vec![ConstraintStep {
            statements: vec![sql],
            ..Default::default()
        }]
    }
}

impl Triggers for MySql {
    fn capture_triggers(&self) -> Vec<String> {
        let pending = PENDING_TABLE;
        vec![
            format!(
                "CREATE TRIGGER IF NOT EXISTS {CAPTURE_INSERT_TRIGGER} \
                 AFTER INSERT ON {DEPLOYMENT} FOR EACH ROW \
                 INSERT IGNORE INTO {pending} (deployment_id) VALUES (NEW.id)"
            ),
            format!(
                "CREATE TRIGGER IF NOT EXISTS {CAPTURE_UPDATE_TRIGGER} \
                 AFTER UPDATE ON {DEPLOYMENT} FOR EACH ROW \
                 IF NOT (CAST(OLD.id AS BINARY) <=> CAST(NEW.id AS BINARY) \
                   AND CAST(OLD.workspace_id AS BINARY) <=> CAST(NEW.workspace_id AS BINARY) \
                   AND CAST(OLD.job_agents AS BINARY) <=> CAST(NEW.job_agents AS BINARY) \
                   AND CAST(OLD.job_agent_id AS BINARY) <=> CAST(NEW.job_agent_id AS BINARY) \
                   AND CAST(OLD.job_agent_config AS BINARY) <=> CAST(NEW.job_agent_config AS BINARY)) \
                 THEN INSERT IGNORE INTO {pending} (deployment_id) \
                   VALUES (NEW.id); \
                 END IF"
            ),
        ]
    }

    fn capture_every_update(&self) -> Vec<String> {
        let pending = PENDING_TABLE;
        vec![format!(
            "CREATE OR REPLACE TRIGGER {CAPTURE_UPDATE_TRIGGER} \
           AFTER UPDATE ON {DEPLOYMENT} FOR EACH ROW \
           INSERT IGNORE INTO {pending} (deployment_id) VALUES (NEW.id)"
        )]
    }

    fn remove_capture_triggers(&self) -> Vec<String> {
        vec![
            format!("DROP TRIGGER IF EXISTS {CAPTURE_INSERT_TRIGGER}"),
            format!("DROP TRIGGER IF EXISTS {CAPTURE_UPDATE_TRIGGER}"),
        ]
    }

    fn live_trigger_steps(&self, ddl: Vec<String>) -> Vec<Vec<String>> {
        live_triggers::steps(ddl)
    }

    fn sync_triggers(&self, target: &SyncTarget) -> Vec<String> {
        sync::install(target)
    }

    fn sync_routines_in_place(&self, target: &SyncTarget) -> Option<Statement> {
        Some(sync::routines_in_place(target))
    }

    fn remove_sync_triggers(&self, _target: &SyncTarget) -> Vec<String> {
        sync::remove()
    }

    /// A session variable, cleared at the end of the writes it guards, and in any case with
    /// the lock-wait settings before the connection goes back to the pool.
    fn sync_guard(&self) -> Vec<Statement> {
        let sql = format!("SET {} = '{}'", sync::guard(), sync::HELD_BY_THE_MIGRATION);
        vec![Statement::from_string(DbBackend::MySql, sql)]
    }

    fn sync_unguard(&self) -> Vec<Statement> {
        let sql = format!("SET {} = NULL", sync::guard());
        vec![Statement::from_string(DbBackend::MySql, sql)]
    }

    /// The sync guard is a session variable.
    fn session_reset(&self) -> Vec<Statement> {
        self.sync_unguard()
    }
}

impl JoinTableLoad for MySql {
    fn locks_page_rows(&self) -> bool {
        true
    }

    /// On a Galera cluster, a separate `CREATE INDEX` on a table whose parent is being
    /// written can stall the appliers (seen here on MariaDB 10.11 with two applier threads).
    fn index_inside_create_table(&self) -> bool {
        true
    }
}

/// A MariaDB/MySQL identifier, quoted.
fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

/// What MariaDB makes of `JSON`: this type with this check on the column.
const JSON_SPELLED_OUT: &str = "longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin";

/// A legacy column's type and its inline check clause (` CHECK (…)`, last in a column's
/// declaration), as `ADD COLUMN` and `MODIFY COLUMN` declare them: `JSON` where the
/// catalogue shows what `JSON` means, so that `MODIFY` finds the column unchanged but for
/// what it restores and runs in place (spelled out, the check counts as a change of type and
/// the table is copied).
fn type_and_check(column: &ColumnDecl) -> (String, String) {
    let json_check = format!("json_valid({})", quote(&column.name));
    match &column.check {
        Some(check) if *check == json_check && column.declared_type == JSON_SPELLED_OUT => {
            ("json".to_owned(), String::new())
        }
        Some(check) => (column.declared_type.clone(), format!(" CHECK ({check})")),
        None => (column.declared_type.clone(), String::new()),
    }
}
