//! Trigger DDL on tables the application is writing, MariaDB's way.
//!
//! A statement MariaDB has prepared (sqlx prepares every statement, and keeps it for the
//! connection's life) fixes at preparation the tables and routines its table's triggers use.
//! When the table is opened anew later (a trigger was created, say), the server prepares the
//! statement again only if the table's definition changed or one of its triggers was created
//! no earlier than the statement was prepared; otherwise it keeps the old statement, and a
//! new trigger using anything outside the old set fails it (`1146 Table … doesn't exist`,
//! `PROCEDURE … does not exist`) for as long as the connection lives.
//!
//! A trigger's creation time is the session's `timestamp` when `CREATE TRIGGER` starts, not
//! the moment the trigger becomes visible, and a Galera node applying the statement carries
//! the originating node's time to the second only. So each trigger is created with the
//! session clock set ahead: every statement prepared before the trigger is visible, on any
//! node, counts as older than it and prepares again, once, with the new trigger. No table
//! lock is needed (Galera does not support one). Measured with server-side prepared
//! writers on every node (`tests/tests/live.rs`; issue 22 has the figures).
//!
//! For as long as the trigger is dated ahead, each time the server opens the table anew
//! (any trigger DDL does, even one that finds the trigger there; so does a full table
//! definition cache), statements on it prepare again once. A step that loses to the
//! writers and is retried must therefore not redo trigger DDL that succeeded: every
//! statement is a step of its own (MariaDB commits DDL statement by statement anyway).
//! Retrying a step of six triggers a few thousand times, while a writer kept going,
//! failed the writer's statement with `1615 Prepared statement needs to be re-prepared`
//! (the server gives up after three tries in a row).

/// How far ahead of the clock a trigger is dated: far longer than any Galera node's apply
/// lag or clock skew, short enough that the re-preparing on every reopening of the table
/// it causes ends within the hour; its `CREATED` in `information_schema.TRIGGERS` reads an
/// hour late.
const DATED_AHEAD_SECONDS: u32 = 3_600;

/// `ddl` (trigger statements on live tables) as steps: one statement each, dated ahead.
pub fn steps(ddl: Vec<String>) -> Vec<Vec<String>> {
    ddl.into_iter().map(|sql| vec![dated_ahead(&sql)]).collect()
}

/// `sql` under a session clock [`DATED_AHEAD_SECONDS`] ahead, if it creates something
/// (after the comment lines it may open with).
fn dated_ahead(sql: &str) -> String {
    let (comments, code) = crate::backends::split_leading_comments(sql);
    let mut words = code.split_whitespace();
    if !(words.next()).is_some_and(|word| word.eq_ignore_ascii_case("CREATE")) {
        return sql.to_owned();
    }
    let clock = format!("SET STATEMENT timestamp = UNIX_TIMESTAMP() + {DATED_AHEAD_SECONDS} FOR");
    format!("{comments}{clock} {}", code.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_statement_is_a_step_and_only_creations_are_dated() {
        let steps = steps(vec![
            "CREATE OR REPLACE TRIGGER t AFTER INSERT ON d FOR EACH ROW SET @x = 1".into(),
            "DROP TRIGGER IF EXISTS t".into(),
            "-- Why it is there.\nCREATE TRIGGER u BEFORE INSERT ON d FOR EACH ROW SET @y = 2"
                .into(),
        ]);
        assert_eq!(
            steps,
            [
                vec![
                    "SET STATEMENT timestamp = UNIX_TIMESTAMP() + 3600 FOR CREATE OR REPLACE \
                     TRIGGER t AFTER INSERT ON d FOR EACH ROW SET @x = 1"
                ],
                vec!["DROP TRIGGER IF EXISTS t"],
                vec![
                    "-- Why it is there.\nSET STATEMENT timestamp = UNIX_TIMESTAMP() + 3600 FOR \
                     CREATE TRIGGER u BEFORE INSERT ON d FOR EACH ROW SET @y = 2"
                ],
            ]
        );
    }
}
