//! What upstream shipped for this change: one set-based statement in one transaction, in
//! each backend's JSON functions. Fixed SQL: it runs on the generated schema only.

use sea_orm::DbBackend;

/// The statements, in order, each with the step it belongs to; `with_index` adds the
/// reverse index ours has.
pub fn statements(backend: DbBackend, with_index: bool) -> Vec<(&'static str, &'static str)> {
    let (create, insert, index, drop): (&str, &str, &str, &[&str]) = match backend {
        DbBackend::Postgres => (
            "CREATE TABLE deployment_job_agent (
               deployment_id uuid NOT NULL REFERENCES deployment(id) ON DELETE CASCADE,
               job_agent_id uuid NOT NULL REFERENCES job_agent(id) ON DELETE CASCADE,
               config jsonb NOT NULL DEFAULT '{}',
               PRIMARY KEY (deployment_id, job_agent_id))",
            "INSERT INTO deployment_job_agent (deployment_id, job_agent_id, config)
             SELECT d.id, (e->>'ref')::uuid, COALESCE(e->'config', '{}'::jsonb)
             FROM deployment d, jsonb_array_elements(d.job_agents) e
             WHERE e->>'ref' IS NOT NULL
               AND EXISTS (SELECT 1 FROM job_agent a WHERE a.id = (e->>'ref')::uuid)
             ON CONFLICT DO NOTHING",
            "CREATE INDEX deployment_job_agent_job_agent_id_idx ON deployment_job_agent (job_agent_id)",
            &["ALTER TABLE deployment DROP COLUMN job_agents, DROP COLUMN job_agent_id, \
               DROP COLUMN job_agent_config"],
        ),
        DbBackend::MySql => (
            "CREATE TABLE deployment_job_agent (
               deployment_id binary(16) NOT NULL, job_agent_id binary(16) NOT NULL,
               config json NOT NULL DEFAULT '{}',
               PRIMARY KEY (deployment_id, job_agent_id),
               CONSTRAINT up_fk_d FOREIGN KEY (deployment_id) REFERENCES deployment (id) ON DELETE CASCADE,
               CONSTRAINT up_fk_a FOREIGN KEY (job_agent_id) REFERENCES job_agent (id) ON DELETE CASCADE)",
            "INSERT IGNORE INTO deployment_job_agent (deployment_id, job_agent_id, config)
             SELECT d.id, UNHEX(REPLACE(e.ref, '-', '')), COALESCE(e.config, '{}')
             FROM deployment d, JSON_TABLE(d.job_agents, '$[*]' COLUMNS (
               ref VARCHAR(64) PATH '$.ref', config JSON PATH '$.config')) e
             WHERE e.ref IS NOT NULL
               AND EXISTS (SELECT 1 FROM job_agent a WHERE a.id = UNHEX(REPLACE(e.ref, '-', '')))",
            "CREATE INDEX deployment_job_agent_job_agent_id_idx ON deployment_job_agent (job_agent_id)",
            &[
                "ALTER TABLE deployment DROP FOREIGN KEY fk_deployment_job_agent_id",
                "ALTER TABLE deployment DROP COLUMN job_agents, DROP COLUMN job_agent_id, \
                 DROP COLUMN job_agent_config",
            ],
        ),
        _ => (
            "CREATE TABLE deployment_job_agent (
               deployment_id uuid_text NOT NULL REFERENCES deployment (id) ON DELETE CASCADE,
               job_agent_id uuid_text NOT NULL REFERENCES job_agent (id) ON DELETE CASCADE,
               config jsonb_text NOT NULL DEFAULT '{}',
               PRIMARY KEY (deployment_id, job_agent_id))",
            "INSERT OR IGNORE INTO deployment_job_agent (deployment_id, job_agent_id, config)
             SELECT d.id, unhex(replace(json_extract(e.value, '$.ref'), '-', '')),
                    COALESCE(json_extract(e.value, '$.config'), '{}')
             FROM deployment d, json_each(d.job_agents) e
             WHERE json_extract(e.value, '$.ref') IS NOT NULL
               AND EXISTS (SELECT 1 FROM job_agent a
                           WHERE a.id = unhex(replace(json_extract(e.value, '$.ref'), '-', '')))",
            "CREATE INDEX deployment_job_agent_job_agent_id_idx ON deployment_job_agent (job_agent_id)",
            // SQLite cannot drop a column in a foreign key: upstream's drop is a rebuild; the
            // statement timed here is the set-based insert, as the issue compares.
            &[],
        ),
    };
    let mut statements = vec![("create table", create), ("insert … select", insert)];
    if with_index {
        statements.push(("index", index));
    }
    statements.extend(drop.iter().map(|sql| ("drop columns", *sql)));
    statements
}
