//! Legacy databases as the old application left them.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement, Value};
use uuid::Uuid;

use crate::{Backend, TestDb};

/// How the legacy tables came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacySchema {
    /// Created by our baseline migration; ids bound as `Uuid` (what an entity would write).
    Baseline,
    /// Written by hand like an old application: extra columns and indexes, and on MariaDB
    /// and SQLite ids as text (one agent in upper case) and JSON as plain text.
    HandBuilt,
}

/// Writes legacy rows with bound values.
pub struct Legacy<'a> {
    pub db: &'a TestDb,
    pub schema: LegacySchema,
}

impl<'a> Legacy<'a> {
    /// Builds the legacy tables on `db`.
    pub async fn build(db: &'a TestDb, schema: LegacySchema) -> Legacy<'a> {
        match schema {
            LegacySchema::Baseline => Migrator::up(&db.conn, Some(1)).await.expect("baseline"),
            LegacySchema::HandBuilt => {
                for statement in hand_built_ddl(db.backend) {
                    db.exec(statement, vec![]).await;
                }
            }
        }
        Legacy { db, schema }
    }

    /// An id as this schema stores it.
    pub fn id(&self, id: Uuid) -> Value {
        match (self.schema, self.db.backend) {
            (LegacySchema::HandBuilt, Backend::MariaDb | Backend::Sqlite) => {
                Value::String(Some(id.hyphenated().to_string()))
            }
            _ => Value::Uuid(Some(id)),
        }
    }

    /// An id stored in upper case where ids are text (the same UUID elsewhere).
    pub fn shouted_id(&self, id: Uuid) -> Value {
        match self.id(id) {
            Value::String(Some(text)) => Value::String(Some(text.to_uppercase())),
            other => other,
        }
    }

    fn opt_id(&self, id: Option<Uuid>) -> Value {
        match id {
            Some(id) => self.id(id),
            None => match self.id(Uuid::nil()) {
                Value::String(_) => Value::String(None),
                _ => Value::Uuid(None),
            },
        }
    }

    pub async fn workspace(&self, id: Uuid) {
        let sql = "INSERT INTO workspace (id, name) VALUES ($1, $2)";
        self.db
            .exec(sql, vec![self.id(id), format!("ws {id}").into()])
            .await;
    }

    pub async fn agent(&self, id: Uuid, workspace: Option<Uuid>) {
        self.agent_stored_as(self.id(id), workspace).await;
    }

    pub async fn agent_stored_as(&self, id: Value, workspace: Option<Uuid>) {
        let sql = "INSERT INTO job_agent (id, workspace_id, name) VALUES ($1, $2, $3)";
        let name = "agent 'quoted'; --".to_owned();
        self.db
            .exec(sql, vec![id, self.opt_id(workspace), name.into()])
            .await;
    }

    /// A deployment with its three legacy columns given as stored text.
    pub async fn deployment(
        &self,
        id: Uuid,
        workspace: Option<Uuid>,
        job_agent_id: Option<Uuid>,
        job_agent_config: &str,
        job_agents: &str,
    ) {
        let json = |n: u8| self.json_param(n);
        let sql = format!(
            "INSERT INTO deployment (id, name, job_agent_id, job_agent_config, workspace_id, \
             job_agents) VALUES ($1, $2, $3, {}, $5, {})",
            json(4),
            json(6)
        );
        let values = vec![
            self.id(id),
            format!("deployment {id}").into(),
            self.opt_id(job_agent_id),
            job_agent_config.into(),
            self.opt_id(workspace),
            job_agents.into(),
        ];
        self.db.exec(&sql, values).await;
    }

    /// Placeholder `$n` for JSON text, cast where the column is not text.
    fn json_param(&self, n: u8) -> String {
        match self.db.backend {
            Backend::Postgres => format!("CAST(${n} AS jsonb)"),
            _ => format!("${n}"),
        }
    }

    /// Gives deployment `id` new legacy values (and workspace), as stored text.
    pub async fn update_deployment(
        &self,
        id: Uuid,
        workspace: Option<Uuid>,
        job_agent_id: Option<Uuid>,
        job_agent_config: &str,
        job_agents: &str,
    ) {
        let update = self.update(
            id,
            Some(workspace),
            job_agent_id,
            job_agent_config,
            job_agents,
        );
        if let Err(error) = self.db.conn.execute_raw(update).await {
            panic!("{:?}: updating deployment {id}\n{error}", self.db.backend);
        }
    }

    /// The old application's write of deployment `id`'s three legacy columns (as stored
    /// text): a statement for any connection to this database.
    pub fn legacy_write(
        &self,
        id: Uuid,
        job_agent_id: Option<Uuid>,
        job_agent_config: &str,
        job_agents: &str,
    ) -> Statement {
        self.update(id, None, job_agent_id, job_agent_config, job_agents)
    }

    /// One `UPDATE` of deployment `id`'s legacy columns, and of its workspace when given.
    fn update(
        &self,
        id: Uuid,
        workspace: Option<Option<Uuid>>,
        job_agent_id: Option<Uuid>,
        job_agent_config: &str,
        job_agents: &str,
    ) -> Statement {
        let mut sets = vec![];
        let mut values = vec![];
        let mut set = |column: &str, value: Value, json: bool| {
            values.push(value);
            let n = values.len() as u8;
            let placeholder = if json {
                self.json_param(n)
            } else {
                format!("${n}")
            };
            sets.push(format!("{column} = {placeholder}"));
        };
        if let Some(workspace) = workspace {
            set("workspace_id", self.opt_id(workspace), false);
        }
        set("job_agent_id", self.opt_id(job_agent_id), false);
        set("job_agent_config", job_agent_config.into(), true);
        set("job_agents", job_agents.into(), true);
        values.push(self.id(id));
        let sql = format!(
            "UPDATE deployment SET {} WHERE id = ${}",
            sets.join(", "),
            values.len()
        );
        self.db.statement(&sql, values)
    }
}

fn hand_built_ddl(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Postgres => &[
            "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\"",
            "CREATE TABLE workspace (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), \
             name text NOT NULL, slug text UNIQUE)",
            "CREATE TABLE job_agent (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), \
             workspace_id uuid REFERENCES workspace(id), name text NOT NULL DEFAULT '', \
             type text NOT NULL DEFAULT 'kubernetes', config jsonb NOT NULL DEFAULT '{}')",
            "CREATE TABLE IF NOT EXISTS deployment (
               id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
               name text NOT NULL,
               job_agent_id uuid REFERENCES job_agent(id),
               job_agent_config jsonb NOT NULL,
               resource_selector text,
               workspace_id uuid REFERENCES workspace(id),
               job_agents jsonb NOT NULL,
               description text NOT NULL DEFAULT '',
               created_at timestamptz NOT NULL DEFAULT now()
             )",
            "CREATE INDEX deployment_workspace_idx ON deployment (workspace_id)",
        ],
        Backend::MariaDb => &[
            "CREATE TABLE workspace (id CHAR(36) NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            "CREATE TABLE job_agent (id CHAR(36) NOT NULL PRIMARY KEY, workspace_id CHAR(36) NULL, \
             name VARCHAR(255) NOT NULL DEFAULT '', \
             CONSTRAINT job_agent_workspace FOREIGN KEY (workspace_id) REFERENCES workspace (id)) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            "CREATE TABLE deployment (id CHAR(36) NOT NULL PRIMARY KEY, name TEXT NOT NULL, \
             job_agent_id CHAR(36) NULL, job_agent_config LONGTEXT NOT NULL, \
             resource_selector TEXT NULL, workspace_id CHAR(36) NULL, job_agents LONGTEXT NOT NULL, \
             created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             KEY deployment_name_idx (name(32)), \
             CONSTRAINT deployment_agent FOREIGN KEY (job_agent_id) REFERENCES job_agent (id), \
             CONSTRAINT deployment_workspace FOREIGN KEY (workspace_id) REFERENCES workspace (id)) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ],
        Backend::Sqlite => &[
            "CREATE TABLE workspace (id TEXT PRIMARY KEY, name TEXT NOT NULL)",
            "CREATE TABLE job_agent (id TEXT PRIMARY KEY, workspace_id TEXT REFERENCES workspace(id), \
             name TEXT NOT NULL DEFAULT '')",
            "CREATE TABLE deployment (id TEXT PRIMARY KEY, name TEXT NOT NULL, \
             job_agent_id TEXT REFERENCES job_agent(id), job_agent_config TEXT NOT NULL, \
             resource_selector TEXT, workspace_id TEXT REFERENCES workspace(id), \
             job_agents TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             UNIQUE (workspace_id, name))",
            "CREATE INDEX deployment_created_idx ON deployment (created_at)",
        ],
    }
}

/// `db` made a hand-built legacy database holding [`seed_messy`]'s `count` deployments.
pub async fn hand_built_messy(db: &TestDb, count: u128) {
    let legacy = Legacy::build(db, LegacySchema::HandBuilt).await;
    seed_messy(&legacy, count).await;
}

/// Deterministic messy legacy rows: `count` deployments over two workspaces and five agents,
/// with every kind of entry the rules distinguish (and text that is not JSON where the
/// columns are text).
pub async fn seed_messy(legacy: &Legacy<'_>, count: u128) {
    let (w1, w2) = (Uuid::from_u128(0x51), Uuid::from_u128(0x52));
    legacy.workspace(w1).await;
    legacy.workspace(w2).await;
    let agents = [
        (1, Some(w1)),
        (2, Some(w1)),
        (3, Some(w2)),
        (4, None),
        (5, Some(w1)),
    ];
    for (n, ws) in agents {
        legacy.agent(Uuid::from_u128(0xa0 + n), ws).await;
    }
    let agent = |n: u128| Uuid::from_u128(0xa0 + n).to_string();
    let text_columns = legacy.db.backend != Backend::Postgres;
    for i in 0..count {
        let job_agents = match i % 9 {
            0 => format!(
                r#"[{{"ref": "{}", "config": {{"n": 123456789012345678901234567890}}}}]"#,
                agent(1)
            ),
            1 => format!(
                r#"["{}", "{}", "{}"]"#,
                agent(2),
                agent(2).to_uppercase(),
                agent(4)
            ),
            2 => format!(
                r#"[{{"ref": "{}", "selector": "x"}}, 42, "nope"]"#,
                agent(5)
            ),
            3 => format!(r#"["{}", "{}"]"#, agent(3), Uuid::from_u128(0xdead)),
            4 => "null".to_owned(),
            5 => r#"{"ref": "x"}"#.to_owned(),
            6 if text_columns => "[{oops".to_owned(),
            _ => format!(
                r#"[{{"ref": "{}", "config": {{"é": "☃"}}}}, {{"ref": "{}", "config": 7}}]"#,
                agent(1),
                agent(2)
            ),
        };
        let (job_agent_id, config) = match i % 5 {
            0 => (Some(Uuid::from_u128(0xa2)), r#"{"image": "x"}"#),
            1 => (None, r#"{"orphan": 1}"#),
            _ => (None, "{}"),
        };
        let ws = [Some(w1), Some(w2), None][(i % 3) as usize];
        legacy
            .deployment(
                Uuid::from_u128(0xd000 + i),
                ws,
                job_agent_id,
                config,
                &job_agents,
            )
            .await;
    }
}
