//! `down` of the drop gives back the legacy columns as they were declared (type, nullability,
//! default, foreign key and its delete rule, or none), not as the baseline would create them;
//! then `up` again works. Each case declares the legacy columns another way.

use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
use tests::legacy::{Legacy, LegacySchema};
use tests::{Backend, TestDb, on_every_backend, read};
use uuid::Uuid;

on_every_backend!(
    down_gives_back_hand_built_columns_as_declared,
    down_gives_back_columns_without_a_foreign_key_and_with_defaults,
    down_gives_back_a_foreign_key_with_its_delete_rule,
    down_gives_back_the_baseline_columns,
    down_gives_back_the_columns_checks,
);

async fn down_gives_back_hand_built_columns_as_declared(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    round_trip(&legacy).await;
}

async fn down_gives_back_the_baseline_columns(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::Baseline).await;
    round_trip(&legacy).await;
}

async fn down_gives_back_columns_without_a_foreign_key_and_with_defaults(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    redeclare(
        &db,
        match db.backend {
            Backend::Postgres => &[
                "ALTER TABLE deployment DROP CONSTRAINT deployment_job_agent_id_fkey, \
                 ALTER COLUMN job_agent_config DROP NOT NULL, \
                 ALTER COLUMN job_agents SET DEFAULT '[]'::jsonb",
            ],
            Backend::MariaDb => &[
                "ALTER TABLE deployment DROP FOREIGN KEY deployment_agent",
                "ALTER TABLE deployment MODIFY job_agent_config LONGTEXT NULL, \
                 MODIFY job_agents LONGTEXT NOT NULL DEFAULT '[]'",
            ],
            Backend::Sqlite => &[
                "DROP TABLE deployment",
                "CREATE TABLE deployment (id TEXT PRIMARY KEY, name TEXT NOT NULL, \
                 job_agent_id TEXT, job_agent_config TEXT, resource_selector TEXT, \
                 workspace_id TEXT REFERENCES workspace(id), \
                 job_agents TEXT NOT NULL DEFAULT '[]')",
            ],
        },
    )
    .await;
    round_trip(&legacy).await;
}

async fn down_gives_back_a_foreign_key_with_its_delete_rule(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    redeclare(
        &db,
        match db.backend {
            Backend::Postgres => &[
                "ALTER TABLE deployment DROP CONSTRAINT deployment_job_agent_id_fkey, \
                 ADD CONSTRAINT legacy_agent FOREIGN KEY (job_agent_id) \
                 REFERENCES job_agent (id) ON DELETE SET NULL",
            ],
            Backend::MariaDb => &[
                "ALTER TABLE deployment DROP FOREIGN KEY deployment_agent",
                "ALTER TABLE deployment ADD CONSTRAINT legacy_agent FOREIGN KEY (job_agent_id) \
                 REFERENCES job_agent (id) ON DELETE SET NULL",
            ],
            Backend::Sqlite => &[
                "DROP TABLE deployment",
                "CREATE TABLE deployment (id TEXT PRIMARY KEY, name TEXT NOT NULL, \
                 job_agent_id TEXT REFERENCES job_agent(id) ON DELETE SET NULL, \
                 job_agent_config TEXT NOT NULL DEFAULT '{}', resource_selector TEXT, \
                 workspace_id TEXT REFERENCES workspace(id), job_agents TEXT NOT NULL)",
            ],
        },
    )
    .await;
    round_trip(&legacy).await;
}

/// Checks on the legacy columns (MariaDB's `JSON` is one), one left unvalidated on
/// PostgreSQL, and on SQLite a collation and checks elsewhere in the table: all come back
/// as declared, and still refuse what they refused.
async fn down_gives_back_the_columns_checks(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    redeclare(
        &db,
        match db.backend {
            Backend::Postgres => &[
                "ALTER TABLE deployment \
                 ADD CONSTRAINT agents_are_an_array CHECK (jsonb_typeof(job_agents) = 'array')",
                "ALTER TABLE deployment ADD CONSTRAINT config_is_an_object \
                 CHECK (jsonb_typeof(job_agent_config) = 'object') NOT VALID",
            ],
            Backend::MariaDb => &["ALTER TABLE deployment MODIFY job_agents JSON NOT NULL, \
                 MODIFY job_agent_config LONGTEXT NOT NULL \
                 CHECK (json_valid(job_agent_config) AND json_type(job_agent_config) = 'OBJECT')"],
            Backend::Sqlite => &[
                "DROP TABLE deployment",
                "CREATE TABLE deployment (id TEXT PRIMARY KEY, \
                 name TEXT NOT NULL CHECK (name <> ''), \
                 job_agent_id TEXT REFERENCES job_agent(id), \
                 job_agent_config TEXT NOT NULL COLLATE NOCASE \
                   CONSTRAINT config_is_json CHECK (json_valid(job_agent_config)), \
                 resource_selector TEXT, workspace_id TEXT REFERENCES workspace(id), \
                 job_agents TEXT NOT NULL CHECK (json_type(job_agents) = 'array'), \
                 CONSTRAINT named CHECK (length(name) < 100))",
            ],
        },
    )
    .await;
    let refused = match db.backend {
        Backend::Postgres => {
            vec![
                ("job_agents", r#"{"not": "an array"}"#),
                ("job_agent_config", "[1]"),
            ]
        }
        Backend::Sqlite => vec![
            ("job_agents", r#"{"not": "an array"}"#),
            ("job_agent_config", "not json"),
        ],
        Backend::MariaDb => vec![("job_agents", "not json"), ("job_agent_config", "[1]")],
    };
    assert_refused(&legacy, &refused).await;
    round_trip(&legacy).await;
    // `round_trip` ends with `up` again: down once more, and read what came back.
    Migrator::down(&legacy.db.conn, Some(1))
        .await
        .expect("down");
    if db.backend == Backend::Sqlite {
        let sql = &sqlite_table_sql(&db).await[0];
        for clause in [
            "CHECK (name <> '')",
            "COLLATE NOCASE",
            "CONSTRAINT config_is_json CHECK (json_valid(job_agent_config))",
            "CHECK (json_type(job_agents) = 'array')",
            "CONSTRAINT named CHECK (length(name) < 100)",
        ] {
            assert!(sql.contains(clause), "{clause} missing: {sql}");
        }
    }
    assert_refused(&legacy, &refused).await;
}

/// Each (column, value) written over a deployment's legacy column fails.
async fn assert_refused(legacy: &Legacy<'_>, refused: &[(&str, &str)]) {
    let db = legacy.db;
    let id = Uuid::from_u128(0xbad);
    let entries = "[]";
    legacy.deployment(id, None, None, "{}", entries).await;
    for (column, value) in refused {
        let cast = match db.backend {
            Backend::Postgres => "CAST($1 AS jsonb)",
            _ => "$1",
        };
        let sql = format!("UPDATE deployment SET {column} = {cast} WHERE id = $2");
        let statement = db.statement(&sql, vec![(*value).into(), legacy.id(id)]);
        let result = db.conn.execute_raw(statement).await;
        assert!(
            result.is_err(),
            "{:?}: {column} = {value} was accepted",
            db.backend
        );
    }
    db.exec("DELETE FROM deployment WHERE id = $1", vec![legacy.id(id)])
        .await;
}

/// SQLite's statement for `deployment` (none elsewhere).
async fn sqlite_table_sql(db: &TestDb) -> Vec<String> {
    if db.backend != Backend::Sqlite {
        return vec![];
    }
    let sql = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deployment'";
    let rows = db
        .conn
        .query_all_raw(db.statement(sql, vec![]))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
}

async fn redeclare(db: &TestDb, statements: &[&str]) {
    for sql in statements {
        db.exec(sql, vec![]).await;
    }
}

/// Seeds linked deployments, then `up`, `down` one step, and `up` again: the declaration of
/// the legacy columns after `down` must equal the one before `up`.
async fn round_trip(legacy: &Legacy<'_>) {
    let db = legacy.db;
    let (ws, agent) = (Uuid::from_u128(0x77), Uuid::from_u128(0xa1));
    legacy.workspace(ws).await;
    legacy.agent(agent, Some(ws)).await;
    let entries = format!(r#"[{{"ref": "{agent}", "config": {{"n": 1}}}}]"#);
    for n in 0..5 {
        legacy
            .deployment(Uuid::from_u128(0xd0 + n), Some(ws), None, "{}", &entries)
            .await;
    }
    let declared = declaration(db).await;
    assert!(declared.len() >= 3, "{declared:?}");

    Migrator::up(&db.conn, None).await.expect("up");
    assert!(
        declaration(db).await.is_empty(),
        "the legacy columns are gone"
    );
    let links = read::links(db).await;
    Migrator::down(&db.conn, Some(1)).await.expect("down");
    assert_eq!(declaration(db).await, declared, "{:?}", db.backend);
    assert!(
        read::columns(db, "deployment_job_agent_legacy_column")
            .await
            .is_empty(),
        "the record is gone once the columns are back"
    );
    assert_eq!(read::unfilled_legacy_rows(db).await, 0, "every row filled");

    Migrator::up(&db.conn, None).await.expect("up again");
    assert_eq!(read::links(db).await, links);
}

/// The legacy columns' declarations and foreign keys, one line each, sorted; read with the
/// backend's own catalogue, independently of the migration's code.
async fn declaration(db: &TestDb) -> Vec<String> {
    let sql = match db.backend {
        Backend::Postgres => {
            "SELECT concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod), \
               CASE WHEN a.attnotnull THEN 'NOT NULL' END, \
               'DEFAULT ' || pg_get_expr(d.adbin, d.adrelid)) \
             FROM pg_attribute a \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = to_regclass('deployment') AND NOT a.attisdropped \
               AND a.attname IN ('job_agents', 'job_agent_id', 'job_agent_config') \
             UNION ALL \
             SELECT concat_ws(' ', conname, pg_get_constraintdef(oid)) FROM pg_constraint \
             WHERE conrelid = to_regclass('deployment') AND contype IN ('f', 'c') \
               AND pg_get_constraintdef(oid) LIKE '%job_agent%'"
        }
        Backend::MariaDb => {
            "SELECT CONCAT_WS(' ', COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, \
               CONCAT('DEFAULT ', COLUMN_DEFAULT), COLLATION_NAME) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
               AND TABLE_NAME = 'deployment' \
               AND COLUMN_NAME IN ('job_agents', 'job_agent_id', 'job_agent_config') \
             UNION ALL \
             SELECT CONCAT_WS(' ', 'CHECK', CONSTRAINT_NAME, CHECK_CLAUSE) \
             FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() \
               AND TABLE_NAME = 'deployment' AND CHECK_CLAUSE LIKE '%job_agent%' \
             UNION ALL \
             SELECT CONCAT_WS(' ', k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, \
               k.REFERENCED_COLUMN_NAME, r.DELETE_RULE, r.UPDATE_RULE) \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA \
               AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
             WHERE k.TABLE_SCHEMA = DATABASE() AND k.TABLE_NAME = 'deployment' \
               AND k.COLUMN_NAME = 'job_agent_id'"
        }
        Backend::Sqlite => {
            "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || \
               COALESCE(dflt_value, 'no default') \
             FROM pragma_table_info('deployment') \
             WHERE name IN ('job_agents', 'job_agent_id', 'job_agent_config') \
             UNION ALL \
             SELECT \"from\" || ' ' || \"table\" || ' ' || \"to\" || ' ' || on_update || ' ' || \
               on_delete \
             FROM pragma_foreign_key_list('deployment') WHERE \"from\" = 'job_agent_id'"
        }
    };
    let rows = db
        .conn
        .query_all_raw(db.statement(sql, vec![]))
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e}", db.backend));
    let mut lines: Vec<String> = rows
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    lines.sort();
    lines
}
