//! Reads what the migration wrote, decoding ids in SQL (not with the migration's code), so
//! a bug in the migration's id handling cannot hide itself.

use sea_orm::{ConnectionTrait, QueryResult, Value};
use uuid::Uuid;

use crate::{Backend, TestDb};

/// A link as stored; config as the database prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    pub deployment: Uuid,
    pub agent: Uuid,
    pub config: serde_json::Value,
}

impl LinkRow {
    pub fn new(deployment: Uuid, agent: Uuid, config: serde_json::Value) -> LinkRow {
        LinkRow {
            deployment,
            agent,
            config,
        }
    }
}

/// A reject row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectRow {
    pub deployment: Uuid,
    /// `legacy_column`: `job_agents`, `job_agent_id` or `job_agent_config`.
    pub column: String,
    /// `entry_index`: the element's position in `job_agents`, if about one.
    pub index: Option<i64>,
    pub reason: String,
    pub entry: serde_json::Value,
}

/// SQL that prints any stored spelling of a UUID column as 32 lower-case hex digits.
fn uuid_hex(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Postgres => format!("replace(CAST({column} AS text), '-', '')"),
        Backend::MariaDb => format!(
            "IF(LENGTH({column}) = 16, LOWER(HEX({column})), LOWER(REPLACE({column}, '-', '')))"
        ),
        Backend::Sqlite => format!(
            "CASE typeof({column}) WHEN 'blob' THEN lower(hex({column})) \
             ELSE lower(replace({column}, '-', '')) END"
        ),
    }
}

/// SQL that prints a JSON column as text.
fn json_text(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Postgres => format!("CAST({column} AS text)"),
        _ => column.to_owned(),
    }
}

async fn rows(db: &TestDb, sql: &str, values: Vec<Value>) -> Vec<QueryResult> {
    match db.conn.query_all_raw(db.statement(sql, values)).await {
        Ok(rows) => rows,
        Err(error) => panic!("{:?}: {sql}\n{error}", db.backend),
    }
}

fn uuid_at(row: &QueryResult, index: usize) -> Uuid {
    let hex: String = row.try_get_by_index(index).expect("uuid column");
    Uuid::parse_str(&hex).unwrap_or_else(|_| panic!("not a UUID: {hex}"))
}

fn json_at(row: &QueryResult, index: usize) -> serde_json::Value {
    let text: String = row.try_get_by_index(index).expect("json column");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every link, sorted.
pub async fn links(db: &TestDb) -> Vec<LinkRow> {
    let sql = format!(
        "SELECT {}, {}, {} FROM deployment_job_agent",
        uuid_hex(db.backend, "deployment_id"),
        uuid_hex(db.backend, "job_agent_id"),
        json_text(db.backend, "config")
    );
    let mut links: Vec<LinkRow> = rows(db, &sql, vec![])
        .await
        .iter()
        .map(|row| LinkRow::new(uuid_at(row, 0), uuid_at(row, 1), json_at(row, 2)))
        .collect();
    links.sort_by_key(|link| (link.deployment, link.agent));
    links
}

/// Every reject row, sorted.
pub async fn rejects(db: &TestDb) -> Vec<RejectRow> {
    let sql = format!(
        "SELECT {}, legacy_column, entry_index, reason, {} \
         FROM deployment_job_agent_backfill_reject",
        uuid_hex(db.backend, "deployment_id"),
        json_text(db.backend, "entry")
    );
    let mut rejects: Vec<RejectRow> = rows(db, &sql, vec![])
        .await
        .iter()
        .map(|row| {
            let index: Option<i32> = row.try_get_by_index(2).expect("entry_index");
            RejectRow {
                deployment: uuid_at(row, 0),
                column: row.try_get_by_index(1).expect("legacy_column"),
                index: index.map(i64::from),
                reason: row.try_get_by_index(3).expect("reason"),
                entry: json_at(row, 4),
            }
        })
        .collect();
    rejects.sort_by_cached_key(|reject| format!("{reject:?}"));
    rejects
}

/// Whether the database's own JSON comparison finds the link's config equal to `source`.
pub async fn link_config_equals(db: &TestDb, deployment: Uuid, agent: Uuid, source: &str) -> bool {
    let equal = match db.backend {
        Backend::Postgres => "config = CAST($3 AS jsonb)",
        Backend::MariaDb => "JSON_EQUALS(config, $3)",
        Backend::Sqlite => "json(config) = json($3)",
    };
    let sql = format!(
        "SELECT {equal} FROM deployment_job_agent WHERE {} = $1 AND {} = $2",
        uuid_hex(db.backend, "deployment_id"),
        uuid_hex(db.backend, "job_agent_id"),
    );
    let values = vec![simple(deployment), simple(agent), source.into()];
    let found = rows(db, &sql, values).await;
    assert_eq!(found.len(), 1, "no link {deployment} → {agent}");
    match db.backend {
        Backend::Postgres => found[0].try_get_by_index::<bool>(0).expect("bool"),
        _ => found[0].try_get_by_index::<i32>(0).expect("0 or 1") == 1,
    }
}

fn simple(id: Uuid) -> Value {
    id.simple().to_string().into()
}

/// The columns of `table`, sorted.
pub async fn columns(db: &TestDb, table: &str) -> Vec<String> {
    let sql = match db.backend {
        Backend::Postgres => {
            "SELECT CAST(column_name AS text) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
        Backend::MariaDb => {
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = $1"
        }
        Backend::Sqlite => "SELECT name FROM pragma_table_info($1)",
    };
    let mut names: Vec<String> = rows(db, sql, vec![table.into()])
        .await
        .iter()
        .map(|row| row.try_get_by_index(0).expect("column name"))
        .collect();
    names.sort();
    names
}

/// `SELECT COUNT(*)` of a table.
pub async fn count(db: &TestDb, table: &str) -> i64 {
    let found = rows(db, &format!("SELECT COUNT(*) FROM {table}"), vec![]).await;
    found[0].try_get_by_index::<i64>(0).expect("count")
}

/// Every table's name, columns and rows, as one text: equal fingerprints mean nothing in
/// the database changed.
pub async fn fingerprint(db: &TestDb) -> String {
    let tables_sql = match db.backend {
        Backend::Postgres => {
            "SELECT CAST(table_name AS text) FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY 1"
        }
        Backend::MariaDb => {
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1"
        }
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1",
    };
    let mut out = String::new();
    for row in rows(db, tables_sql, vec![]).await {
        let table: String = row.try_get_by_index(0).expect("table name");
        let columns = columns(db, &table).await;
        out.push_str(&format!("{table} {columns:?}\n"));
        let as_text: Vec<String> = columns
            .iter()
            .map(|c| match db.backend {
                Backend::Postgres => format!("COALESCE(CAST(\"{c}\" AS text), '<null>')"),
                Backend::MariaDb => format!("COALESCE(HEX(`{c}`), '<null>')"),
                Backend::Sqlite => format!("quote(\"{c}\")"),
            })
            .collect();
        let separator = match db.backend {
            Backend::MariaDb => "CONCAT_WS('|', ".to_owned() + &as_text.join(", ") + ")",
            _ => as_text.join(" || '|' || "),
        };
        let quoted = match db.backend {
            Backend::MariaDb => format!("`{table}`"),
            _ => format!("\"{table}\""),
        };
        let mut lines: Vec<String> = rows(db, &format!("SELECT {separator} FROM {quoted}"), vec![])
            .await
            .iter()
            .map(|row| row.try_get_by_index(0).expect("row text"))
            .collect();
        lines.sort();
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Deployments whose legacy `job_agents` or `job_agent_config` is NULL (after a `down`: not
/// filled back).
pub async fn unfilled_legacy_rows(db: &TestDb) -> i64 {
    let sql = "SELECT COUNT(*) FROM deployment \
               WHERE job_agents IS NULL OR job_agent_config IS NULL";
    let row = rows(db, sql, vec![]).await;
    row[0].try_get_by_index(0).expect("a count")
}

/// A deployment's legacy columns as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyRow {
    /// `job_agents`, parsed (NULL is `None`).
    pub job_agents: Option<serde_json::Value>,
    /// `job_agent_id`.
    pub job_agent_id: Option<Uuid>,
    /// `job_agent_config`, parsed (NULL is `None`).
    pub job_agent_config: Option<serde_json::Value>,
}

impl LegacyRow {
    /// What `down` (and the expand phase's sync) writes for `deployment` from these links:
    /// every link an entry `{"ref", "config"}` in agent id order, `job_agent_id` NULL,
    /// `job_agent_config` `{}`.
    pub fn written_by_down(links: &[LinkRow], deployment: Uuid) -> LegacyRow {
        let mut mine: Vec<&LinkRow> = links
            .iter()
            .filter(|l| l.deployment == deployment)
            .collect();
        mine.sort_by_key(|l| l.agent);
        let entries = mine
            .iter()
            .map(|l| serde_json::json!({"ref": l.agent.to_string(), "config": l.config}))
            .collect();
        LegacyRow {
            job_agents: Some(serde_json::Value::Array(entries)),
            job_agent_id: None,
            job_agent_config: Some(serde_json::json!({})),
        }
    }
}

/// Every deployment's legacy columns, by id.
pub async fn legacy_rows(db: &TestDb) -> std::collections::BTreeMap<Uuid, LegacyRow> {
    let sql = format!(
        "SELECT {}, {}, {}, {} FROM deployment",
        uuid_hex(db.backend, "id"),
        json_text(db.backend, "job_agents"),
        uuid_hex(db.backend, "job_agent_id"),
        json_text(db.backend, "job_agent_config"),
    );
    let json = |row: &QueryResult, index| {
        let text: Option<String> = row.try_get_by_index(index).expect("json column");
        text.map(|t| serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}")))
    };
    rows(db, &sql, vec![])
        .await
        .iter()
        .map(|row| {
            let agent: Option<String> = row.try_get_by_index(2).expect("job_agent_id");
            let legacy = LegacyRow {
                job_agents: json(row, 1),
                job_agent_id: agent.map(|hex| Uuid::parse_str(&hex).expect("a UUID")),
                job_agent_config: json(row, 3),
            };
            (uuid_at(row, 0), legacy)
        })
        .collect()
}
