//! PostgreSQL: `lock_timeout` per transaction, SQLSTATEs, `pg_blocking_pids`; the expand
//! phase's triggers in `sync.sql`; the drop step's locked transaction in `drop.rs`.

mod sync;

use sea_orm_migration::prelude::{Alias, Expr, Func};
use sea_orm_migration::sea_orm::{DbBackend, DbErr, QueryResult, Statement};
use uuid::Uuid;

use super::{
    Catalogue, ColumnDdl, ConstraintStep, JoinTableLoad, SyncTarget, TableLock, Triggers, Values,
    foreign_key_name,
};
use crate::backends::column_decl::ColumnDecl;
use crate::ids::StoredId;
use crate::tables::{
    CAPTURE_FUNCTION, CAPTURE_UPDATE_TRIGGER, DEPLOYMENT, JOB_AGENT, JOIN_TABLE, LEGACY_COLUMNS,
    PENDING_TABLE,
};

pub struct Postgres;

impl Catalogue for Postgres {
    /// Ownership of `deployment` (its triggers and columns change), the right to create in
    /// the schema, and on `job_agent` what a foreign key to it and a lock on it take.
    fn legacy_column_definitions(&self) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT CAST(a.attname AS text), format_type(a.atttypid, a.atttypmod), \
               CAST(a.attnotnull AS integer), pg_get_expr(d.adbin, d.adrelid), \
               (SELECT CAST(json_agg(json_build_array(cc.conname, \
                         pg_get_constraintdef(cc.oid)) ORDER BY cc.conname) AS text) \
                FROM pg_constraint cc WHERE cc.conrelid = a.attrelid AND cc.contype = 'c' \
                  AND cc.conkey = ARRAY[a.attnum]), \
               CAST(c.conname AS text), \
               CAST(CAST(c.confrelid AS regclass) AS text), quote_ident(pa.attname), \
               CASE c.confdeltype WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE' \
                 WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' ELSE 'NO ACTION' END \
             FROM pg_attribute a \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             LEFT JOIN pg_constraint c ON c.conrelid = a.attrelid AND c.contype = 'f' \
               AND c.conkey = ARRAY[a.attnum] \
             LEFT JOIN pg_attribute pa ON pa.attrelid = c.confrelid \
               AND pa.attnum = c.confkey[1] \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 \
               AND NOT a.attisdropped AND a.attname IN ($2, $3, $4)",
            [DEPLOYMENT]
                .into_iter()
                .chain(LEGACY_COLUMNS)
                .map(Into::into),
        )
    }

    fn trigger_exists(&self, name: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2",
            [DEPLOYMENT.into(), name.into()],
        )
    }

    fn current_schema(&self) -> Option<Statement> {
        Some(Statement::from_string(
            DbBackend::Postgres,
            "SELECT quote_ident(current_schema())",
        ))
    }

    fn missing_privileges(&self) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT needed FROM (VALUES \
               ('owner of table ' || $1 || ' (its triggers and columns change)', \
                pg_has_role((SELECT relowner FROM pg_class \
                             WHERE oid = to_regclass($1)), 'USAGE')), \
               ('CREATE on schema ' || current_schema(), \
                has_schema_privilege(current_schema(), 'CREATE')), \
               ('SELECT on table ' || $2, \
                has_table_privilege(to_regclass($2), 'SELECT')), \
               ('REFERENCES on table ' || $2 || ' (for the join table foreign key)', \
                has_table_privilege(to_regclass($2), 'REFERENCES')), \
               ('UPDATE on table ' || $2 || ' (to lock it while its keys change)', \
                has_table_privilege(to_regclass($2), 'UPDATE')) \
             ) AS privilege(needed, granted) WHERE NOT granted",
            [DEPLOYMENT.into(), JOB_AGENT.into()],
        )
    }

    fn declared_type(&self, table: &str, column: &str) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
            [table.into(), column.into()],
        )
    }
}

impl Values for Postgres {
    /// Built into PostgreSQL 13+, unlike `uuid_generate_v4()` from the uuid-ossp extension.
    fn generated_id_default(&self) -> Option<&'static str> {
        Some("gen_random_uuid()")
    }

    fn json_type(&self) -> &'static str {
        "jsonb"
    }

    fn read_id(&self, row: &QueryResult, index: &mut usize) -> Result<Option<StoredId>, DbErr> {
        let id = row.try_get_by_index::<Option<Uuid>>(*index)?;
        *index += 1;
        Ok(id.map(StoredId::Uuid))
    }

    fn select_json_text(&self, column: Expr) -> Expr {
        Func::cast_as(column, Alias::new("text")).into()
    }

    fn json_value(&self, text: String) -> Expr {
        Func::cast_as(Expr::val(text), Alias::new("jsonb")).into()
    }
}

impl ColumnDdl for Postgres {
    /// The foreign key is added `NOT VALID` (no scan); it is checked for new rows at once
    /// and validated, without blocking writers, once the column is filled.
    fn add_legacy_column(&self, column: &ColumnDecl) -> Vec<String> {
        let name = quote(&column.name);
        let mut statements = vec![format!(
            "ALTER TABLE {DEPLOYMENT} ADD COLUMN IF NOT EXISTS {name} {}",
            column.declared_type
        )];
        if let Some(key) = &column.foreign_key {
            statements.push(format!(
                "ALTER TABLE {DEPLOYMENT} ADD CONSTRAINT {} FOREIGN KEY ({name}) \
                 REFERENCES {} ({}) ON DELETE {} NOT VALID",
                quote(&foreign_key_name(column)),
                key.table,
                key.column,
                key.on_delete
            ));
        }
        statements
    }

    /// `NOT NULL` the way that never scans under an exclusive lock: a `CHECK (… IS NOT
    /// NULL) NOT VALID`, validated without blocking writers, lets `SET NOT NULL` skip its
    /// scan; the check then goes.
    fn restore_constraints(&self, column: &ColumnDecl) -> Vec<ConstraintStep> {
        let name = quote(&column.name);
        let exclusive = |statements| ConstraintStep {
            lock: Some(TableLock::access_exclusive(DEPLOYMENT)),
            statements,
            ..Default::default()
        };
        let unlocked = |statements| ConstraintStep {
            statements,
            ..Default::default()
        };
        let mut steps = vec![];
        if let Some(default) = &column.default {
            steps.push(exclusive(vec![format!(
                "ALTER TABLE {DEPLOYMENT} ALTER COLUMN {name} SET DEFAULT {default}"
            )]));
        }
        if column.not_null {
            let check = quote(&format!("{}_restored_not_null", column.name));
            steps.push(exclusive(vec![
                format!("ALTER TABLE {DEPLOYMENT} DROP CONSTRAINT IF EXISTS {check}"),
                format!(
                    "ALTER TABLE {DEPLOYMENT} ADD CONSTRAINT {check} \
                     CHECK ({name} IS NOT NULL) NOT VALID"
                ),
            ]));
            steps.push(unlocked(vec![format!(
                "ALTER TABLE {DEPLOYMENT} VALIDATE CONSTRAINT {check}"
            )]));
            steps.push(exclusive(vec![
                format!("ALTER TABLE {DEPLOYMENT} ALTER COLUMN {name} SET NOT NULL"),
                format!("ALTER TABLE {DEPLOYMENT} DROP CONSTRAINT {check}"),
            ]));
        }
        for (check, definition) in column_checks(column) {
            let check = quote(&check);
            // Added unchecked for an instant, then checked beside the application, unless it
            // was declared `NOT VALID` (rows from before it stay unchecked, as they were).
            let (definition, validated) = match definition.strip_suffix(" NOT VALID") {
                Some(unvalidated) => (unvalidated.to_owned(), false),
                None => (definition, true),
            };
            steps.push(exclusive(vec![
                format!("ALTER TABLE {DEPLOYMENT} DROP CONSTRAINT IF EXISTS {check}"),
                format!("ALTER TABLE {DEPLOYMENT} ADD CONSTRAINT {check} {definition} NOT VALID"),
            ]));
            if validated {
                steps.push(unlocked(vec![format!(
                    "ALTER TABLE {DEPLOYMENT} VALIDATE CONSTRAINT {check}"
                )]));
            }
        }
        if column.foreign_key.is_some() {
            steps.push(unlocked(vec![format!(
                "ALTER TABLE {DEPLOYMENT} VALIDATE CONSTRAINT {}",
                quote(&foreign_key_name(column))
            )]));
        }
        steps
    }
}

impl Triggers for Postgres {
    fn capture_triggers(&self) -> Vec<String> {
        let pending = PENDING_TABLE;
        let (function, update) = (CAPTURE_FUNCTION, CAPTURE_UPDATE_TRIGGER);
        vec![
            // SECURITY DEFINER: the application's role may write `deployment` without any
            // privilege on the pending table. The table is named with its schema and the
            // search path is fixed, so no object of the caller's can stand in for ours.
            format!(
                "DO $do$ BEGIN EXECUTE format($sql$ \
                   CREATE OR REPLACE FUNCTION {function}() \
                   RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER \
                   SET search_path = pg_catalog, pg_temp AS $fn$ BEGIN \
                     INSERT INTO %I.{pending} (deployment_id) \
                     VALUES (NEW.id) ON CONFLICT DO NOTHING; \
                     RETURN NULL; \
                   END $fn$ $sql$, current_schema()); END $do$"
            ),
            format!("DROP TRIGGER IF EXISTS {function} ON {DEPLOYMENT}"),
            format!(
                "CREATE TRIGGER {function} AFTER INSERT \
                 ON {DEPLOYMENT} FOR EACH ROW EXECUTE FUNCTION {function}()"
            ),
            format!("DROP TRIGGER IF EXISTS {update} ON {DEPLOYMENT}"),
            format!(
                "CREATE TRIGGER {update} AFTER UPDATE \
                 ON {DEPLOYMENT} FOR EACH ROW WHEN ( \
                   (CAST(OLD.id AS text), CAST(OLD.workspace_id AS text), \
                    CAST(OLD.job_agents AS text), CAST(OLD.job_agent_id AS text), \
                    CAST(OLD.job_agent_config AS text)) \
                   IS DISTINCT FROM \
                   (CAST(NEW.id AS text), CAST(NEW.workspace_id AS text), \
                    CAST(NEW.job_agents AS text), CAST(NEW.job_agent_id AS text), \
                    CAST(NEW.job_agent_config AS text))) \
                 EXECUTE FUNCTION {function}()"
            ),
        ]
    }

    /// `DROP TRIGGER` would lock `deployment` `ACCESS EXCLUSIVE` (readers wait, and a hot
    /// standby replays it behind its queries); replacing the function locks no table.
    fn silence_capture(&self) -> Option<Vec<String>> {
        Some(vec![format!(
            "CREATE OR REPLACE FUNCTION {CAPTURE_FUNCTION}() RETURNS trigger \
             LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS \
             $fn$ BEGIN RETURN NULL; END $fn$"
        )])
    }

    fn remove_capture_triggers(&self) -> Vec<String> {
        vec![
            format!("DROP TRIGGER IF EXISTS {CAPTURE_FUNCTION} ON {DEPLOYMENT}"),
            format!("DROP TRIGGER IF EXISTS {CAPTURE_UPDATE_TRIGGER} ON {DEPLOYMENT}"),
            format!("DROP FUNCTION IF EXISTS {CAPTURE_FUNCTION}()"),
        ]
    }

    fn sync_triggers(&self, target: &SyncTarget) -> Vec<String> {
        vec![sync::install(target)]
    }

    fn remove_sync_triggers(&self, target: &SyncTarget) -> Vec<String> {
        sync::remove(&target.schema)
    }

    /// Local to the transaction: it ends with it, committed or not.
    fn sync_guard(&self) -> Vec<Statement> {
        vec![Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config($1, 'on', true)",
            [sync::guard().into()],
        )]
    }
}

impl JoinTableLoad for Postgres {
    fn join_table_starts_bare(&self) -> bool {
        true
    }

    /// The join table was created without its keys and index (adding a key later would
    /// lock its parent `ACCESS EXCLUSIVE`, which hot standbys replay behind their readers).
    fn builds_index_after_load(&self) -> bool {
        true
    }

    fn refresh_join_table_statistics(&self) -> Vec<String> {
        vec![format!("ANALYZE {JOIN_TABLE}")]
    }

    fn join_table_has_key(&self, name: &str) -> Option<Statement> {
        let sql = "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2";
        let values = [JOIN_TABLE.into(), name.into()];
        Some(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
    }

    /// Added `NOT VALID` (from then on new rows are checked and deletes cascade), with the
    /// parent locked against writes (not reads) for an instant; links whose parent was
    /// deleted meanwhile removed; then validated, which blocks neither readers nor writers.
    fn join_table_key_steps(
        &self,
        name: &str,
        column: &str,
        parent: &'static str,
    ) -> Vec<ConstraintStep> {
        vec![
            ConstraintStep {
                lock: Some(TableLock::share_row_exclusive(parent)),
                then: vec![TableLock::share_row_exclusive(JOIN_TABLE)],
                statements: vec![format!(
                    "ALTER TABLE {JOIN_TABLE} ADD CONSTRAINT {name} FOREIGN KEY ({column}) \
                     REFERENCES {parent} (id) ON DELETE CASCADE NOT VALID"
                )],
            },
            ConstraintStep {
                statements: vec![format!(
                    "DELETE FROM {JOIN_TABLE} l \
                     WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = l.{column})"
                )],
                ..Default::default()
            },
            ConstraintStep {
                lock: Some(TableLock {
                    table: JOIN_TABLE,
                    mode: "SHARE UPDATE EXCLUSIVE",
                }),
                statements: vec![format!(
                    "ALTER TABLE {JOIN_TABLE} VALIDATE CONSTRAINT {name}"
                )],
                ..Default::default()
            },
        ]
    }
}

/// A PostgreSQL identifier, quoted.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A legacy column's own checks (those on it alone), as recorded: name and definition as
/// `pg_get_constraintdef` prints it, from the JSON array the catalogue query builds.
fn column_checks(column: &ColumnDecl) -> Vec<(String, String)> {
    (column.check.as_deref())
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}
