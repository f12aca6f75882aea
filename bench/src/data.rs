//! Deterministic legacy data: 100 workspaces, 2,000 job agents (20 each), N deployments whose
//! `job_agents` hold 0–5 entries (mean 2.5) of `{"ref", "config", "selector": ""}` naming
//! agents of their workspace; `job_agent_id` on 10% of rows; ~1% of entries name a missing
//! agent, ~0.5% repeat an earlier entry.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use serde_json::json;
use uuid::Uuid;

pub const WORKSPACES: u64 = 100;
pub const AGENTS_PER_WORKSPACE: u64 = 20;
const ROWS_PER_INSERT: usize = 1_000;

/// SplitMix64: small, fast, and the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(
            ((u128::from(self.next()) << 64) | u128::from(self.next())).to_be_bytes(),
        )
        .into_uuid()
    }
}

/// The legacy `deployment` columns the generator writes (JSON at positions 3 and 5).
const DEPLOYMENT_COLUMNS: [&str; 6] = [
    "id",
    "name",
    "job_agent_id",
    "job_agent_config",
    "workspace_id",
    "job_agents",
];

pub fn workspace_id(n: u64) -> Uuid {
    Uuid::from_u128(0x1000_0000_0000_0000_0000_0000_0000_0000 + u128::from(n))
}

pub fn agent_id(n: u64) -> Uuid {
    Uuid::from_u128(0x2000_0000_0000_0000_0000_0000_0000_0000 + u128::from(n))
}

/// Creates the legacy tables (the baseline migration) and fills them.
pub async fn generate(db: &DatabaseConnection, deployments: u64, seed: u64) -> Result<(), DbErr> {
    Migrator::up(db, Some(1)).await?;
    let backend = db.get_database_backend();
    let workspaces: Vec<Vec<Value>> = (0..WORKSPACES)
        .map(|w| vec![workspace_id(w).into(), format!("workspace {w}").into()])
        .collect();
    insert(db, "workspace", &["id", "name"], &[], workspaces).await?;
    let agents: Vec<Vec<Value>> = (0..WORKSPACES * AGENTS_PER_WORKSPACE)
        .map(|a| {
            let ws = workspace_id(a / AGENTS_PER_WORKSPACE);
            vec![agent_id(a).into(), ws.into(), format!("agent {a}").into()]
        })
        .collect();
    insert(
        db,
        "job_agent",
        &["id", "workspace_id", "name"],
        &[],
        agents,
    )
    .await?;

    let mut rng = Rng::new(seed);
    let mut rows = Vec::with_capacity(ROWS_PER_INSERT);
    for d in 0..deployments {
        rows.push(deployment(&mut rng, d));
        if rows.len() == ROWS_PER_INSERT {
            insert(
                db,
                "deployment",
                &DEPLOYMENT_COLUMNS,
                &[3, 5],
                std::mem::take(&mut rows),
            )
            .await?;
        }
    }
    insert(db, "deployment", &DEPLOYMENT_COLUMNS, &[3, 5], rows).await?;
    let analyze = match backend {
        DbBackend::Postgres => "VACUUM ANALYZE",
        DbBackend::MySql => "ANALYZE TABLE deployment, job_agent, workspace",
        _ => "ANALYZE",
    };
    db.execute_unprepared(analyze).await.map(|_| ())
}

/// Adds one deployment whose `job_agents` array is about `megabytes` of JSON text: entries
/// over every agent, each with a 200-byte config, so most of them are duplicates, each a
/// reject row. Returns the array's size in bytes.
pub async fn add_huge_deployment(db: &DatabaseConnection, megabytes: u64) -> Result<u64, DbErr> {
    let agents = WORKSPACES * AGENTS_PER_WORKSPACE;
    let target = megabytes << 20;
    let mut text = String::from("[");
    let mut n = 0u64;
    while (text.len() as u64) < target {
        if n > 0 {
            text.push(',');
        }
        let blob = "x".repeat(200);
        let entry = format!(
            r#"{{"ref":"{}","config":{{"n":{n},"blob":"{blob}"}}}}"#,
            agent_id(n % agents)
        );
        text.push_str(&entry);
        n += 1;
    }
    text.push(']');
    let bytes = text.len() as u64;
    let row = vec![
        uuid::Uuid::from_u128(0x3000_0000_0000_0000_0000_0000_0000_0000).into(),
        "huge".into(),
        Value::Uuid(None),
        "{}".into(),
        workspace_id(0).into(),
        text.into(),
    ];
    insert(db, "deployment", &DEPLOYMENT_COLUMNS, &[3, 5], vec![row]).await?;
    Ok(bytes)
}

/// Fills `db` (empty, on the same MariaDB server) with a copy of database `source`, server
/// side: much faster than generating the rows again.
pub async fn copy_on_server(db: &DatabaseConnection, source: &str) -> Result<(), DbErr> {
    Migrator::up(db, Some(1)).await?;
    for table in ["workspace", "job_agent", "deployment"] {
        let sql = format!("INSERT INTO {table} SELECT * FROM {source}.{table}");
        db.execute_unprepared(&sql).await?;
    }
    let analyze = "ANALYZE TABLE deployment, job_agent, workspace";
    db.execute_unprepared(analyze).await.map(|_| ())
}

fn deployment(rng: &mut Rng, d: u64) -> Vec<Value> {
    let ws = rng.below(WORKSPACES);
    let agent_of_ws =
        |rng: &mut Rng| agent_id(ws * AGENTS_PER_WORKSPACE + rng.below(AGENTS_PER_WORKSPACE));
    let mut entries: Vec<serde_json::Value> = vec![];
    for k in 0..rng.below(6) {
        let roll = rng.below(1_000);
        let entry = if roll < 5 && !entries.is_empty() {
            entries[entries.len() - 1].clone()
        } else {
            let agent = if roll < 15 {
                rng.uuid()
            } else {
                agent_of_ws(rng)
            };
            json!({"ref": agent.to_string(), "config": {"k": k, "image": format!("app-{}", rng.below(50))}, "selector": ""})
        };
        entries.push(entry);
    }
    let (job_agent_id, config): (Value, String) = match rng.below(10) {
        0 => (agent_of_ws(rng).into(), json!({"legacy": true}).to_string()),
        _ => (Value::Uuid(None), "{}".to_owned()),
    };
    vec![
        rng.uuid().into(),
        format!("deployment {d}").into(),
        job_agent_id,
        config.into(),
        workspace_id(ws).into(),
        serde_json::Value::Array(entries).to_string().into(),
    ]
}

/// A multi-row INSERT with bound values; `json_columns` are cast to jsonb on PostgreSQL.
async fn insert(
    db: &DatabaseConnection,
    table: &str,
    columns: &[&str],
    json_columns: &[usize],
    rows: Vec<Vec<Value>>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let mut values = vec![];
    let mut tuples = vec![];
    for row in rows {
        let mut placeholders = vec![];
        for (i, value) in row.into_iter().enumerate() {
            values.push(value);
            let p = match backend {
                DbBackend::Postgres => format!("${}", values.len()),
                _ => "?".to_owned(),
            };
            placeholders.push(match (backend, json_columns.contains(&i)) {
                (DbBackend::Postgres, true) => format!("CAST({p} AS jsonb)"),
                _ => p,
            });
        }
        tuples.push(format!("({})", placeholders.join(", ")));
    }
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES {}",
        columns.join(", "),
        tuples.join(", ")
    );
    db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map(|_| ())
}
