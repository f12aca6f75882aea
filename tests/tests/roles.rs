//! Role separation: production runs the migration as the tables' owner and the application as
//! a role with row privileges only. While the capture triggers are installed (after the
//! backfill, and again after `down` of the drop), that role's legacy writes must still
//! succeed, and must still reach the links.
#![cfg(feature = "runtime-tokio")]

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tests::legacy::{Legacy, LegacySchema};
use tests::read::{self, LinkRow};
use tests::{Backend, TestDb};
use uuid::Uuid;

tests::on_server_backends!(an_application_role_writes_legacy_rows_while_writes_are_captured);

const WS: Uuid = Uuid::from_u128(0x77);
const AGENTS: [Uuid; 2] = [Uuid::from_u128(0xa1), Uuid::from_u128(0xa2)];

fn deployment(n: u128) -> Uuid {
    Uuid::from_u128(0xd000 + n)
}

fn entries(agent: Uuid) -> String {
    format!(r#"[{{"ref": "{agent}", "config": {{}}}}]"#)
}

async fn an_application_role_writes_legacy_rows_while_writes_are_captured(backend: Backend) {
    let db = TestDb::create(backend, "roles_app_writes").await;
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    legacy.workspace(WS).await;
    for agent in AGENTS {
        legacy.agent(agent, Some(WS)).await;
    }
    for n in 0..3 {
        legacy
            .deployment(deployment(n), Some(WS), None, "{}", &entries(AGENTS[0]))
            .await;
    }
    Migrator::up(&db.conn, Some(3))
        .await
        .expect("up to the backfill");
    let app = application_role(&db).await;

    // Captured writes by a role that has no privilege on the migration's own tables.
    insert_as(&app, &legacy, deployment(9), AGENTS[1]).await;
    update_as(&app, &legacy, deployment(0), AGENTS[1]).await;
    Migrator::up(&db.conn, None).await.expect("the drop step");
    let mut expected: Vec<LinkRow> = vec![
        LinkRow::new(deployment(0), AGENTS[1], serde_json::json!({})),
        LinkRow::new(deployment(1), AGENTS[0], serde_json::json!({})),
        LinkRow::new(deployment(2), AGENTS[0], serde_json::json!({})),
        LinkRow::new(deployment(9), AGENTS[1], serde_json::json!({})),
    ];
    assert_eq!(
        read::links(&db).await,
        expected,
        "the role's writes were caught up"
    );

    // After `down` of the drop the capture is back, and so are the role's writes.
    Migrator::down(&db.conn, Some(1))
        .await
        .expect("down the drop");
    update_as(&app, &legacy, deployment(1), AGENTS[1]).await;
    Migrator::up(&db.conn, None).await.expect("up again");
    expected[1].agent = AGENTS[1];
    assert_eq!(read::links(&db).await, expected);
}

async fn insert_as(app: &DatabaseConnection, legacy: &Legacy<'_>, id: Uuid, agent: Uuid) {
    let sql = format!(
        "INSERT INTO deployment (id, name, job_agent_config, workspace_id, job_agents) \
         VALUES ($1, 'app', {}, $2, {})",
        json(legacy, 3),
        json(legacy, 4)
    );
    let values = vec![
        legacy.id(id),
        legacy.id(WS),
        "{}".into(),
        entries(agent).into(),
    ];
    let statement = legacy.db.statement(&sql, values);
    if let Err(error) = app.execute_raw(statement).await {
        panic!("the application role's insert failed: {error}");
    }
}

async fn update_as(app: &DatabaseConnection, legacy: &Legacy<'_>, id: Uuid, agent: Uuid) {
    let sql = format!(
        "UPDATE deployment SET job_agents = {} WHERE id = $2",
        json(legacy, 1)
    );
    let statement = (legacy.db).statement(&sql, vec![entries(agent).into(), legacy.id(id)]);
    if let Err(error) = app.execute_raw(statement).await {
        panic!("the application role's update failed: {error}");
    }
}

fn json(legacy: &Legacy<'_>, n: u8) -> String {
    match legacy.db.backend {
        Backend::Postgres => format!("CAST(${n} AS jsonb)"),
        _ => format!("${n}"),
    }
}

/// A login role with row privileges on the application's tables and nothing else, made anew.
async fn application_role(db: &TestDb) -> DatabaseConnection {
    let (scheme_and_server, database) = db.url.rsplit_once('/').expect("a server URL");
    let role = format!("{database}_app");
    let tables = "deployment, job_agent, workspace, deployment_job_agent";
    let statements: Vec<String> = match db.backend {
        Backend::Postgres => vec![
            format!("DROP ROLE IF EXISTS {role}"),
            format!("CREATE ROLE {role} LOGIN"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {role}"),
        ],
        _ => {
            let mut statements = vec![];
            for host in ["%", "localhost"] {
                let user = format!("'{role}'@'{host}'");
                statements.push(format!("DROP USER IF EXISTS {user}"));
                statements.push(format!("CREATE USER {user}"));
                for table in tables.split(", ") {
                    statements.push(format!(
                        "GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.`{table}` TO {user}"
                    ));
                }
            }
            statements
        }
    };
    for sql in statements {
        db.exec(&sql, vec![]).await;
    }
    let server = scheme_and_server
        .split_once("://")
        .map(|(scheme, rest)| (scheme, rest.rsplit_once('@').map_or(rest, |(_, host)| host)))
        .expect("a URL with a scheme");
    let url = format!("{}://{role}@{}/{database}", server.0, server.1);
    Database::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect as {role}: {e}"))
}
