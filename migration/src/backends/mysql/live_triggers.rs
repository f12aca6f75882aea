//! Trigger DDL on tables the application is writing, MariaDB's way.
//!
//! A statement MariaDB has prepared (sqlx prepares every statement, and keeps it for the
//! connection's life) fixes at preparation the tables and routines its table's triggers use.
//! A trigger created later beside others, using anything outside that set, fails the old
//! statement (`1146 Table … doesn't exist`, `PROCEDURE … does not exist`) until something
//! makes the statement prepare again; a change to the table's own definition does. So the
//! triggers are created under `LOCK TABLES` (the application's statements wait the few
//! milliseconds), and while the tables are locked each one's definition is changed in a
//! way that changes nothing: its comment set to itself, in place (`ALGORITHM=INSTANT`). A
//! statement prepared before then finds the table changed and prepares again, with every
//! new trigger; none can be prepared while the tables are locked.
//!
//! The comment is read and quoted by the server (`QUOTE`, or doubled quotes where the
//! session does not read backslashes as escapes) into a statement it prepares itself: none
//! of its text passes through the migration.
//!
//! On a Galera cluster `LOCK TABLES` holds only this node's writers; the other nodes apply
//! the DDL statements one at a time (issue 14).

/// The session variable and prepared statement the definition change goes through.
const REDEFINE: &str = "deployment_job_agent_redefine";

/// `ddl` on `tables` as one locked step's statements.
pub fn wrap(tables: &[&'static str], ddl: Vec<String>) -> Vec<String> {
    if ddl.is_empty() {
        return ddl;
    }
    let locks: Vec<String> = tables.iter().map(|t| format!("{t} WRITE")).collect();
    let mut statements = vec![format!("LOCK TABLES {}", locks.join(", "))];
    // First: a statement waiting for the tables prepares again whenever the step ends,
    // even if the migration dies half-way through the triggers.
    for table in tables {
        statements.extend(redefine_unchanged(table));
    }
    statements.extend(ddl);
    statements.push("UNLOCK TABLES".to_owned());
    statements
}

/// Sets `table`'s comment to itself, which MariaDB counts as a new definition.
fn redefine_unchanged(table: &str) -> [String; 4] {
    let handle = REDEFINE;
    [
        format!(
            "SELECT CONCAT('ALTER TABLE {table} COMMENT = ', \
               IF(FIND_IN_SET('NO_BACKSLASH_ESCAPES', @@SESSION.sql_mode) > 0, \
                  CONCAT('''', REPLACE(TABLE_COMMENT, '''', ''''''), ''''), \
                  QUOTE(TABLE_COMMENT)), \
               ', ALGORITHM=INSTANT') \
             INTO @{handle} FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
        ),
        format!("PREPARE {handle} FROM @{handle}"),
        format!("EXECUTE {handle}"),
        format!("DEALLOCATE PREPARE {handle}"),
    ]
}
