//! Hostile input: values that look like SQL never become SQL, huge and odd values are stored
//! verbatim, and refused calls leave everything as it was.

use entity::{job_agent, workspace};
use migration::context::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use serde_json::{Value as Json, json};
use service::{AgentAssignment, Mutation, NewDeployment, Query, ServiceError};
use tests::legacy::{Legacy, LegacySchema};
use tests::read::LinkRow;
use tests::{TestDb, on_every_backend, read, recording_connection};
use uuid::Uuid;

on_every_backend!(
    values_never_reach_the_sql_text,
    service_stores_hostile_values_verbatim,
    a_nul_character_in_legacy_json_is_a_reject_not_a_failure
);

/// Legacy JSON may hold `\u0000` (a PostgreSQL `json` column, MariaDB and SQLite text), which
/// PostgreSQL's `jsonb` cannot store. Such a config is `invalid_config`, recorded as its text;
/// the deployment's other entries still link, `preview` predicts it, and nothing is left
/// set aside.
async fn a_nul_character_in_legacy_json_is_a_reject_not_a_failure(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    if db.backend == tests::Backend::Postgres {
        // As an old application declared it: `json`, which keeps the text as written.
        db.exec(
            "ALTER TABLE deployment ALTER COLUMN job_agents TYPE json USING job_agents::json, \
             ALTER COLUMN job_agent_config TYPE json USING job_agent_config::json",
            vec![],
        )
        .await;
    }
    let (ws, good, bad) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    legacy.workspace(ws).await;
    legacy.agent(good, Some(ws)).await;
    legacy.agent(bad, Some(ws)).await;
    let element = format!(r#"{{"ref": "{bad}", "config": {{"k": "a\u0000b"}}}}"#);
    let entries = format!(r#"[{{"ref": "{good}", "config": {{"ok": 1}}}}, {element}]"#);
    let json = match db.backend {
        tests::Backend::Postgres => "CAST($3 AS json)",
        _ => "$3",
    };
    let deployment = Uuid::from_u128(4);
    let sql = format!(
        "INSERT INTO deployment (id, name, job_agent_config, workspace_id, job_agents) \
         VALUES ($1, 'nul', '{{}}', $2, {json})"
    );
    db.exec(
        &sql,
        vec![legacy.id(deployment), legacy.id(ws), entries.into()],
    )
    .await;

    let preview = migration::backfill::preview(&Context::default(), &db.conn)
        .await
        .expect("preview");
    assert_eq!((preview.links, preview.rejects.len()), (1, 1));
    Migrator::up(&db.conn, None).await.expect("up");
    assert_eq!(
        read::links(&db).await,
        vec![LinkRow::new(deployment, good, json!({"ok": 1}))]
    );
    let rejects = read::rejects(&db).await;
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    let reject = &rejects[0];
    assert_eq!(
        (reject.column.as_str(), reject.index, reject.reason.as_str()),
        ("job_agents", Some(1), "invalid_config")
    );
    let text = reject.entry.as_str().expect("recorded as its text");
    assert_eq!(
        serde_json::from_str::<Json>(text).unwrap()["config"]["k"],
        "a\u{0}b"
    );
}

/// In every value written below; found in no statement's SQL text.
const CANARY: &str = "c4n4ry'; DROP TABLE deployment; --\"";

async fn values_never_reach_the_sql_text(db: TestDb) {
    // The baseline's id types, which the service's entities also read.
    let legacy = Legacy::build(&db, LegacySchema::Baseline).await;
    let (ws, agent) = (Uuid::from_u128(1), Uuid::from_u128(2));
    legacy.workspace(ws).await;
    legacy.agent(agent, Some(ws)).await;
    let hostile = json!({"x": CANARY}).to_string();
    let entries = json!([
        {"ref": agent.to_string(), "config": {"q": CANARY}, "selector": CANARY},
        {"ref": agent.to_string(), "config": {"dup": CANARY}},
        CANARY,
        {"ref": CANARY},
    ])
    .to_string();
    legacy
        .deployment(Uuid::from_u128(3), Some(ws), None, &hostile, &entries)
        .await;
    legacy
        .deployment(
            Uuid::from_u128(4),
            Some(ws),
            Some(agent),
            &hostile,
            &entries,
        )
        .await;

    let (conn, statements) = recording_connection(&db).await;
    migration::backfill::preview(&Context::default(), &conn)
        .await
        .expect("preview");
    Migrator::up(&conn, None).await.expect("up");
    Migrator::down(&conn, Some(3)).await.expect("down");
    Migrator::up(&conn, None).await.expect("up again");
    let assignment = AgentAssignment {
        job_agent_id: agent,
        config: json!({"c": CANARY}),
    };
    let new = NewDeployment {
        name: CANARY.into(),
        resource_selector: Some(CANARY.into()),
        workspace_id: Some(ws),
    };
    let created = Mutation::create_deployment(&conn, new, vec![assignment.clone()])
        .await
        .unwrap();
    Mutation::attach_job_agent(&conn, created.deployment.id, assignment.clone())
        .await
        .unwrap();
    Mutation::replace_job_agents(&conn, created.deployment.id, vec![assignment])
        .await
        .unwrap();
    Query::workspace_deployments(&conn, ws, None, 10)
        .await
        .unwrap();

    let statements = statements.lock().unwrap().clone();
    assert!(
        statements.len() > 20,
        "too few statements recorded: {}",
        statements.len()
    );
    let pasted: Vec<&String> = statements
        .iter()
        .filter(|sql| sql.contains("c4n4ry"))
        .collect();
    assert!(pasted.is_empty(), "values pasted into SQL: {pasted:?}");
    assert!(
        read::rejects(&db)
            .await
            .iter()
            .any(|r| r.entry.to_string().contains("c4n4ry"))
    );
}

async fn service_stores_hostile_values_verbatim(db: TestDb) {
    Migrator::up(&db.conn, None).await.expect("up");
    let ws = workspace::Model {
        id: Uuid::new_v4(),
        name: CANARY.into(),
    };
    ws.clone()
        .into_active_model()
        .insert(&db.conn)
        .await
        .unwrap();
    let agent = job_agent::Model {
        id: Uuid::new_v4(),
        workspace_id: Some(ws.id),
        name: CANARY.into(),
    };
    agent
        .clone()
        .into_active_model()
        .insert(&db.conn)
        .await
        .unwrap();
    let tables = read::columns(&db, "deployment").await;

    // A 1 MB config full of quotes, backslashes and unicode.
    let big: String = "'\";\\ ☃ 👩‍🚀 ".repeat(1024 * 1024 / 24);
    let config = json!({"blob": big, "nested": {"q": CANARY}, "n": u64::MAX});
    let new = NewDeployment {
        name: CANARY.into(),
        resource_selector: Some(CANARY.into()),
        workspace_id: Some(ws.id),
    };
    let assign = |config: Json| AgentAssignment {
        job_agent_id: agent.id,
        config,
    };
    let created = Mutation::create_deployment(&db.conn, new.clone(), vec![assign(config.clone())])
        .await
        .unwrap();
    let stored = Query::job_agents_of_deployment(&db.conn, created.deployment.id)
        .await
        .unwrap();
    assert_eq!(stored[0].config, config);
    assert_eq!(stored[0].job_agent.name, CANARY);
    assert_eq!(created.deployment.name, CANARY);

    // Refused calls write nothing, however odd the input.
    let links = read::links(&db).await;
    let deployments = read::count(&db, "deployment").await;
    let refused = [
        Mutation::create_deployment(
            &db.conn,
            new.clone(),
            vec![assign(json!({})), assign(json!({}))],
        )
        .await,
        Mutation::create_deployment(&db.conn, new.clone(), vec![assign(json!(CANARY))]).await,
    ];
    assert!(matches!(refused[0], Err(ServiceError::DuplicateAgent(_))));
    assert!(matches!(
        refused[1],
        Err(ServiceError::ConfigNotObject { .. })
    ));
    let error = Mutation::replace_job_agents(
        &db.conn,
        created.deployment.id,
        vec![assign(json!([CANARY]))],
    )
    .await;
    assert!(matches!(error, Err(ServiceError::ConfigNotObject { .. })));
    assert_eq!(read::links(&db).await, links);
    assert_eq!(read::count(&db, "deployment").await, deployments);
    assert_eq!(
        read::columns(&db, "deployment").await,
        tables,
        "tables intact"
    );
}
