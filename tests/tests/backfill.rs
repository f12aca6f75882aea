//! The backfill rules end to end: messy legacy rows → `Migrator::up` → links and rejects,
//! then down to the legacy shape and up again, on every backend.

use migration::context::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
use serde_json::{Value as Json, json};
use tests::legacy::{Legacy, LegacySchema};
use tests::read::{self, LinkRow, RejectRow};
use tests::{Backend, TestDb, on_every_backend};
use uuid::Uuid;

on_every_backend!(
    messy_rows_on_a_hand_built_schema,
    messy_rows_on_the_baseline_schema,
    baseline_leaves_existing_legacy_tables_alone,
    baseline_down_refuses_to_drop_tables_with_rows,
    baseline_down_drops_only_the_tables_it_created,
    a_full_rollback_leaves_an_adopted_database_as_it_was,
    a_join_table_another_tool_filled_is_refused_and_kept,
    rerunning_the_backfill_duplicates_nothing,
    links_survive_dropping_the_legacy_columns,
    writes_after_the_backfill_reach_the_links,
    a_failed_backfill_leaves_the_join_table_whole_and_a_rerun_finishes,
);

const W1: Uuid = Uuid::from_u128(0xaaaa_0001);
const W2: Uuid = Uuid::from_u128(0xaaaa_0002);
/// Agents of W1.
const A1: Uuid = Uuid::from_u128(0xa1);
const A2: Uuid = Uuid::from_u128(0xa2);
/// Of W1, stored in upper case where ids are text.
const A_SHOUTED: Uuid = Uuid::from_u128(0xabcdef);
/// Of W2.
const A_FOREIGN: Uuid = Uuid::from_u128(0xf0);
/// Of no workspace.
const A_HOMELESS: Uuid = Uuid::from_u128(0x40);
/// Of nobody: no such agent.
const A_MISSING: Uuid = Uuid::from_u128(0xdead);

fn d(n: u128) -> Uuid {
    Uuid::from_u128(0xd000 + n)
}

/// One legacy deployment and what the rules say it becomes.
struct Case {
    id: Uuid,
    workspace: Option<Uuid>,
    job_agent_id: Option<Uuid>,
    job_agent_config: String,
    job_agents: String,
    links: Vec<(Uuid, Json)>,
    rejects: Vec<(&'static str, Option<i64>, &'static str, Json)>,
}

fn case(n: u128, job_agents: &str) -> Case {
    Case {
        id: d(n),
        workspace: Some(W1),
        job_agent_id: None,
        job_agent_config: "{}".into(),
        job_agents: job_agents.into(),
        links: vec![],
        rejects: vec![],
    }
}

impl Case {
    fn links(mut self, links: Vec<(Uuid, Json)>) -> Self {
        self.links = links;
        self
    }
    fn reject(
        mut self,
        column: &'static str,
        index: Option<i64>,
        reason: &'static str,
        entry: Json,
    ) -> Self {
        self.rejects.push((column, index, reason, entry));
        self
    }
}

const BIG_CONFIG: &str = r#"{"big":123456789012345678901234567890.5,"u":"h\u00e9llo ☃ 👩‍🚀","nested":{"a":[1,2,{"b":null}],"s":"'; DROP TABLE deployment; --"}}"#;

/// Every rule and edge of the backfill, one deployment each.
fn cases(with_invalid_json: bool) -> Vec<Case> {
    let s = |id: Uuid| id.hyphenated().to_string();
    let fifty: Vec<Json> = (0..50)
        .map(|i| json!({"ref": s([A1, A2, A_HOMELESS][i % 3]), "config": {"i": i}}))
        .collect();
    let mut cases = vec![
        case(
            1,
            &format!(r#"[{{"ref":"{}","config":{BIG_CONFIG}}}]"#, s(A1)),
        )
        .links(vec![(A1, serde_json::from_str(BIG_CONFIG).unwrap())]),
        case(
            2,
            &json!([s(A2), {"ref": s(A_SHOUTED).to_uppercase()}]).to_string(),
        )
        .links(vec![(A2, json!({})), (A_SHOUTED, json!({}))]),
        case(3, &json!([{"ref": s(A1), "config": null}]).to_string()).links(vec![(A1, json!({}))]),
        case(4, "null"),
        case(5, "[]"),
        case(6, &json!({"ref": s(A1)}).to_string()).reject(
            "job_agents",
            None,
            "not_an_array",
            json!({"ref": s(A1)}),
        ),
        case(7, r#"[42, {"config": {}}, {"ref": 7}, null]"#)
            .reject("job_agents", Some(0), "malformed_entry", json!(42))
            .reject(
                "job_agents",
                Some(1),
                "malformed_entry",
                json!({"config": {}}),
            )
            .reject("job_agents", Some(2), "malformed_entry", json!({"ref": 7}))
            .reject("job_agents", Some(3), "malformed_entry", json!(null)),
        case(8, r#"["nope", {"ref": "1234"}]"#)
            .reject("job_agents", Some(0), "invalid_ref", json!("nope"))
            .reject("job_agents", Some(1), "invalid_ref", json!({"ref": "1234"})),
        case(9, &json!([s(A_MISSING)]).to_string()).reject(
            "job_agents",
            Some(0),
            "unknown_job_agent",
            json!(s(A_MISSING)),
        ),
        case(10, &json!([s(A_FOREIGN)]).to_string()).reject(
            "job_agents",
            Some(0),
            "cross_workspace",
            json!(s(A_FOREIGN)),
        ),
        Case {
            workspace: None,
            ..case(11, &json!([s(A_FOREIGN)]).to_string()).links(vec![(A_FOREIGN, json!({}))])
        },
        Case {
            workspace: Some(W2),
            ..case(12, &json!([s(A_HOMELESS)]).to_string()).links(vec![(A_HOMELESS, json!({}))])
        },
        case(
            13,
            &json!([{"ref": s(A1), "config": [1]}, {"ref": s(A2), "config": "x"}]).to_string(),
        )
        .reject(
            "job_agents",
            Some(0),
            "invalid_config",
            json!({"ref": s(A1), "config": [1]}),
        )
        .reject(
            "job_agents",
            Some(1),
            "invalid_config",
            json!({"ref": s(A2), "config": "x"}),
        ),
        Case {
            rejects: (3..50)
                .map(|i| ("job_agents", Some(i as i64), "duplicate", fifty[i].clone()))
                .collect(),
            ..case(14, &Json::Array(fifty.clone()).to_string()).links(vec![
                (A1, json!({"i": 0})),
                (A2, json!({"i": 1})),
                (A_HOMELESS, json!({"i": 2})),
            ])
        },
        Case {
            job_agent_id: Some(A1),
            job_agent_config: r#"{"image":"x"}"#.into(),
            ..case(15, &json!([s(A2), 42]).to_string())
                .links(vec![(A1, json!({"image": "x"}))])
                .reject(
                    "job_agents",
                    Some(0),
                    "shadowed_by_job_agent_id",
                    json!(s(A2)),
                )
                .reject("job_agents", Some(1), "shadowed_by_job_agent_id", json!(42))
        },
        Case {
            job_agent_id: Some(A_FOREIGN),
            ..case(16, "[]").reject(
                "job_agent_id",
                None,
                "cross_workspace",
                json!({"ref": s(A_FOREIGN), "config": {}}),
            )
        },
        Case {
            job_agent_config: r#"{"orphan": true}"#.into(),
            ..case(17, "[]").reject(
                "job_agent_config",
                None,
                "orphan_config",
                json!({"orphan": true}),
            )
        },
        case(
            18,
            &json!([{"ref": s(A1), "selector": "env = 'prod'", "note": ""}]).to_string(),
        )
        .links(vec![(A1, json!({}))])
        .reject(
            "job_agents",
            Some(0),
            "extra_keys_dropped",
            json!({"ref": s(A1), "selector": "env = 'prod'", "note": ""}),
        ),
        Case {
            job_agent_id: Some(A2),
            job_agent_config: "[1]".into(),
            ..case(19, "[]").reject(
                "job_agent_id",
                None,
                "invalid_config",
                json!({"ref": s(A2), "config": [1]}),
            )
        },
        Case {
            job_agent_id: Some(A1),
            ..case(20, r#""just text""#)
                .links(vec![(A1, json!({}))])
                .reject(
                    "job_agents",
                    None,
                    "shadowed_by_job_agent_id",
                    json!("just text"),
                )
        },
    ];
    if with_invalid_json {
        cases.push(case(21, "[{\"ref\": oops").reject(
            "job_agents",
            None,
            "invalid_json",
            json!("[{\"ref\": oops"),
        ));
        cases.push(Case {
            job_agent_config: "{not json".into(),
            ..case(22, "[]").reject("job_agent_config", None, "invalid_json", json!("{not json"))
        });
    }
    cases
}

/// Writes the workspaces, agents and `cases` into a legacy database.
async fn seed(legacy: &Legacy<'_>, cases: &[Case]) {
    legacy.workspace(W1).await;
    legacy.workspace(W2).await;
    legacy.agent(A1, Some(W1)).await;
    legacy.agent(A2, Some(W1)).await;
    legacy
        .agent_stored_as(legacy.shouted_id(A_SHOUTED), Some(W1))
        .await;
    legacy.agent(A_FOREIGN, Some(W2)).await;
    legacy.agent(A_HOMELESS, None).await;
    for c in cases {
        legacy
            .deployment(
                c.id,
                c.workspace,
                c.job_agent_id,
                &c.job_agent_config,
                &c.job_agents,
            )
            .await;
    }
}

fn expected_links(cases: &[Case]) -> Vec<LinkRow> {
    let mut links: Vec<LinkRow> = cases
        .iter()
        .flat_map(|c| {
            c.links
                .iter()
                .map(|(agent, config)| LinkRow::new(c.id, *agent, config.clone()))
        })
        .collect();
    links.sort_by_key(|link| (link.deployment, link.agent));
    links
}

fn expected_rejects(cases: &[Case]) -> Vec<RejectRow> {
    let mut rejects: Vec<RejectRow> = cases
        .iter()
        .flat_map(|c| {
            c.rejects
                .iter()
                .map(|(column, index, reason, entry)| RejectRow {
                    deployment: c.id,
                    column: column.to_string(),
                    index: *index,
                    reason: reason.to_string(),
                    entry: entry.clone(),
                })
        })
        .collect();
    rejects.sort_by_cached_key(|reject| format!("{reject:?}"));
    rejects
}

/// Legacy text that is not JSON can only be stored where JSON columns are plain text.
fn stores_invalid_json(db: &TestDb, schema: LegacySchema) -> bool {
    schema == LegacySchema::HandBuilt && db.backend != Backend::Postgres
}

async fn messy_rows_migrate_by_the_rules(db: TestDb, schema: LegacySchema) {
    let cases = cases(stores_invalid_json(&db, schema));
    let legacy = Legacy::build(&db, schema).await;
    seed(&legacy, &cases).await;
    Migrator::up(&db.conn, None).await.expect("up");

    let links = read::links(&db).await;
    assert_eq!(links, expected_links(&cases));
    assert_eq!(read::rejects(&db).await, expected_rejects(&cases));
    for c in &cases {
        for (agent, _) in &c.links {
            let source = match c.id {
                id if id == d(1) => BIG_CONFIG.to_owned(),
                _ => serde_json::to_string(&c.links.iter().find(|l| l.0 == *agent).unwrap().1)
                    .unwrap(),
            };
            assert!(
                read::link_config_equals(&db, c.id, *agent, &source).await,
                "{:?}: config of {} → {agent} differs from its source",
                db.backend,
                c.id
            );
        }
    }
    if db.backend == Backend::Postgres {
        // Planner statistics for the freshly loaded table: without them the first queries
        // after the migration plan for an empty table (a full scan for 100 ids at 1M).
        let sql = "SELECT COUNT(*) FROM pg_stats WHERE schemaname = current_schema() \
                   AND tablename = 'deployment_job_agent'";
        let row = db
            .conn
            .query_one_raw(db.statement(sql, vec![]))
            .await
            .unwrap();
        let columns_with_stats: i64 = row.unwrap().try_get_by_index(0).unwrap();
        assert_eq!(columns_with_stats, 3, "the join table was not analyzed");
    }
    let columns = read::columns(&db, "deployment").await;
    for legacy_column in ["job_agents", "job_agent_id", "job_agent_config"] {
        assert!(
            !columns.contains(&legacy_column.to_owned()),
            "{legacy_column} still there"
        );
    }
    if schema == LegacySchema::HandBuilt {
        assert!(
            columns.contains(&"created_at".to_owned()),
            "extra column lost: {columns:?}"
        );
    }

    // Down to the legacy shape: the columns mean what the links meant.
    Migrator::down(&db.conn, Some(3))
        .await
        .expect("down to the baseline");
    assert_eq!(read::count(&db, "deployment").await, cases.len() as i64);
    assert_legacy_columns_mirror(&db, &links).await;

    // Up again: the same links, and no reject recorded twice.
    Migrator::up(&db.conn, None).await.expect("up again");
    assert_eq!(read::links(&db).await, links);
    assert_eq!(read::rejects(&db).await, expected_rejects(&cases));
}

/// After `down`, `job_agents` lists each link, `job_agent_id` is NULL and
/// `job_agent_config` is `{}`.
async fn assert_legacy_columns_mirror(db: &TestDb, links: &[LinkRow]) {
    let (id, agents, agent_id, config) = match db.backend {
        Backend::Postgres => (
            "CAST(id AS text)",
            "CAST(job_agents AS text)",
            "CAST(job_agent_id AS text)",
            "CAST(job_agent_config AS text)",
        ),
        _ => (
            "LOWER(id)",
            "job_agents",
            "job_agent_id",
            "job_agent_config",
        ),
    };
    let id = match db.backend {
        Backend::Sqlite => "CASE typeof(id) WHEN 'blob' THEN lower(hex(id)) ELSE lower(id) END",
        Backend::MariaDb => "IF(LENGTH(id) = 16, LOWER(HEX(id)), LOWER(id))",
        Backend::Postgres => id,
    };
    let sql = format!("SELECT {id}, {agents}, {agent_id}, {config} FROM deployment");
    let rows = db
        .conn
        .query_all_raw(db.statement(&sql, vec![]))
        .await
        .expect("legacy rows");
    for row in rows {
        let id: String = row.try_get_by_index(0).unwrap();
        let id = Uuid::parse_str(&id).unwrap();
        let job_agents: Json =
            serde_json::from_str(&row.try_get_by_index::<String>(1).unwrap()).unwrap();
        let job_agent_id: Option<String> = row.try_get_by_index(2).unwrap();
        let config: Json =
            serde_json::from_str(&row.try_get_by_index::<String>(3).unwrap()).unwrap();
        let expected: Vec<Json> = links
            .iter()
            .filter(|l| l.deployment == id)
            .map(|l| json!({"ref": l.agent.hyphenated().to_string(), "config": l.config}))
            .collect();
        assert_eq!(job_agents, Json::Array(expected), "job_agents of {id}");
        assert_eq!(job_agent_id, None, "job_agent_id of {id}");
        assert_eq!(config, json!({}), "job_agent_config of {id}");
    }
}

async fn messy_rows_on_a_hand_built_schema(db: TestDb) {
    messy_rows_migrate_by_the_rules(db, LegacySchema::HandBuilt).await;
}

async fn messy_rows_on_the_baseline_schema(db: TestDb) {
    messy_rows_migrate_by_the_rules(db, LegacySchema::Baseline).await;
}

async fn baseline_leaves_existing_legacy_tables_alone(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    seed(&legacy, &cases(false)[..3]).await;
    let before = read::columns(&db, "deployment").await;
    Migrator::up(&db.conn, Some(1)).await.expect("baseline");
    assert_eq!(read::columns(&db, "deployment").await, before);
    assert_eq!(read::count(&db, "deployment").await, 3);
    assert_eq!(read::count(&db, "job_agent").await, 5);
}

async fn baseline_down_refuses_to_drop_tables_with_rows(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::Baseline).await;
    legacy.workspace(W1).await;
    let error = Migrator::down(&db.conn, Some(1))
        .await
        .expect_err("down must refuse");
    assert!(
        error.to_string().contains("`workspace` holds rows"),
        "{error}"
    );
    assert_eq!(read::count(&db, "workspace").await, 1);

    db.exec("DELETE FROM workspace", vec![]).await;
    Migrator::down(&db.conn, Some(1))
        .await
        .expect("empty tables may go");
    assert!(read::columns(&db, "workspace").await.is_empty());
}

/// A database where the application made `workspace` (and a table of its own that
/// references it) before adopting the migrator: the baseline creates the other two, and its
/// `down` drops those two only.
async fn baseline_down_drops_only_the_tables_it_created(db: TestDb) {
    let id = match db.backend {
        Backend::Postgres => "uuid",
        Backend::MariaDb => "BINARY(16)",
        Backend::Sqlite => "BLOB",
    };
    db.exec(
        &format!("CREATE TABLE workspace (id {id} NOT NULL PRIMARY KEY, name TEXT NOT NULL)"),
        vec![],
    )
    .await;
    db.exec(
        &format!(
            "CREATE TABLE workspace_note (workspace_id {id} NOT NULL REFERENCES workspace (id), \
             note TEXT)"
        ),
        vec![],
    )
    .await;
    Migrator::up(&db.conn, Some(1)).await.expect("baseline");
    assert!(!read::columns(&db, "deployment").await.is_empty());

    Migrator::down(&db.conn, Some(1)).await.expect("down");
    assert!(read::columns(&db, "deployment").await.is_empty());
    assert!(read::columns(&db, "job_agent").await.is_empty());
    assert!(
        !read::columns(&db, "workspace").await.is_empty(),
        "the application's"
    );
    assert!(!read::columns(&db, "workspace_note").await.is_empty());
    assert!(
        read::columns(&db, "deployment_job_agent_created_table")
            .await
            .is_empty(),
        "the baseline's record goes with it"
    );

    // Up again creates the two again, and the next down drops them again.
    Migrator::up(&db.conn, Some(1))
        .await
        .expect("baseline again");
    Migrator::down(&db.conn, Some(1)).await.expect("down again");
    assert!(read::columns(&db, "job_agent").await.is_empty());
    assert!(!read::columns(&db, "workspace").await.is_empty());
}

/// The real shape of an adopted database: all three legacy tables the application's, an
/// application table referencing `deployment`. `up` then a full `down` (what `reset` does)
/// gives back the legacy shape and leaves every table in place.
async fn a_full_rollback_leaves_an_adopted_database_as_it_was(db: TestDb) {
    let _legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    let id = match db.backend {
        Backend::Postgres => "uuid",
        Backend::MariaDb => "CHAR(36)",
        Backend::Sqlite => "TEXT",
    };
    db.exec(
        &format!(
            "CREATE TABLE deployment_note (deployment_id {id} NOT NULL \
             REFERENCES deployment (id), note TEXT)"
        ),
        vec![],
    )
    .await;
    let before = read::columns(&db, "deployment").await;
    Migrator::up(&db.conn, None).await.expect("up");
    Migrator::down(&db.conn, None).await.expect("down all");
    assert_eq!(read::columns(&db, "deployment").await, before);
    for table in ["workspace", "job_agent", "deployment_note"] {
        assert!(!read::columns(&db, table).await.is_empty(), "{table} kept");
    }
    Migrator::up(&db.conn, None).await.expect("up again");
}

/// The application's own migration tool ran its version of this change first: its
/// `deployment_job_agent` holds links. `up` refuses before touching it, and a full `down`
/// leaves it, rows and all.
async fn a_join_table_another_tool_filled_is_refused_and_kept(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    legacy.workspace(W1).await;
    legacy.agent(A1, Some(W1)).await;
    legacy.deployment(d(1), Some(W1), None, "{}", "[]").await;
    let id = match db.backend {
        Backend::Postgres => "uuid",
        _ => "CHAR(36)",
    };
    db.exec(
        &format!(
            "CREATE TABLE deployment_job_agent (deployment_id {id} NOT NULL, \
             job_agent_id {id} NOT NULL, PRIMARY KEY (deployment_id, job_agent_id))"
        ),
        vec![],
    )
    .await;
    db.exec(
        "INSERT INTO deployment_job_agent (deployment_id, job_agent_id) VALUES ($1, $2)",
        vec![legacy.id(d(1)), legacy.id(A1)],
    )
    .await;

    let error = Migrator::up(&db.conn, None)
        .await
        .expect_err("up must refuse");
    assert!(
        error
            .to_string()
            .contains("was not created by this migration"),
        "{error}"
    );
    assert_eq!(read::count(&db, "deployment_job_agent").await, 1);
    Migrator::down(&db.conn, None).await.expect("down");
    assert_eq!(read::count(&db, "deployment_job_agent").await, 1);
    assert!(!read::columns(&db, "deployment").await.is_empty());
}

async fn rerunning_the_backfill_duplicates_nothing(db: TestDb) {
    let cases = cases(stores_invalid_json(&db, LegacySchema::HandBuilt));
    backfilled_hand_built(&db, &cases).await;
    let links = read::links(&db).await;
    let rejects = read::rejects(&db).await;

    // As after a crash between the last batch and the migration's bookkeeping.
    migration::backfill::backfill_all(&Context::default(), &db.conn)
        .await
        .expect("backfill again");
    assert_eq!(read::links(&db).await, links);
    assert_eq!(read::rejects(&db).await, rejects);

    // Down one step (links removed, legacy columns untouched) and up again.
    Migrator::down(&db.conn, Some(1))
        .await
        .expect("down the backfill");
    assert_eq!(read::count(&db, "deployment_job_agent").await, 0);
    Migrator::up(&db.conn, None).await.expect("up");
    assert_eq!(read::links(&db).await, links);
    assert_eq!(read::rejects(&db).await, rejects);
}

/// A hand-built legacy database holding `cases`, migrated up to (and with) the backfill.
async fn backfilled_hand_built<'a>(db: &'a TestDb, cases: &[Case]) -> Legacy<'a> {
    let legacy = Legacy::build(db, LegacySchema::HandBuilt).await;
    seed(&legacy, cases).await;
    Migrator::up(&db.conn, Some(3))
        .await
        .expect("up to the backfill");
    legacy
}

async fn links_survive_dropping_the_legacy_columns(db: TestDb) {
    let cases = cases(false);
    let legacy = backfilled_hand_built(&db, &cases).await;
    let links = read::links(&db).await;
    assert!(!links.is_empty());
    Migrator::up(&db.conn, None)
        .await
        .expect("drop the legacy columns");
    assert_eq!(read::links(&db).await, links);
    assert_eq!(read::count(&db, "deployment").await, cases.len() as i64);

    // The foreign keys still hold and still cascade.
    let id = legacy.id(d(14));
    db.exec("DELETE FROM deployment WHERE id = $1", vec![id])
        .await;
    let left = read::links(&db).await;
    assert_eq!(left.len(), links.len() - 3);
    assert!(left.iter().all(|l| l.deployment != d(14)));
}

async fn writes_after_the_backfill_reach_the_links(db: TestDb) {
    let cases = cases(false);
    let legacy = backfilled_hand_built(&db, &cases).await;
    let before = read::links(&db).await;
    let rejects_before = read::rejects(&db).await;

    // What the legacy application keeps doing while the migration runs.
    let new = d(100);
    let agents = json!([A1.to_string()]).to_string();
    legacy.deployment(new, Some(W1), None, "{}", &agents).await;
    let set_agents = match db.backend {
        Backend::Postgres => "UPDATE deployment SET job_agents = CAST($1 AS jsonb) WHERE id = $2",
        _ => "UPDATE deployment SET job_agents = $1 WHERE id = $2",
    };
    let a2 = json!([A2.to_string()]).to_string();
    db.exec(set_agents, vec![a2.into(), legacy.id(d(5))]).await;
    db.exec(set_agents, vec!["[]".into(), legacy.id(d(1))])
        .await;
    db.exec(
        "DELETE FROM deployment WHERE id = $1",
        vec![legacy.id(d(9))],
    )
    .await;
    // Moved into its agent's workspace, the rejected entry of d10 now links.
    db.exec(
        "UPDATE deployment SET workspace_id = $1 WHERE id = $2",
        vec![legacy.id(W2), legacy.id(d(10))],
    )
    .await;
    // A rename changes nothing the rules read: nothing to catch up.
    db.exec(
        "UPDATE deployment SET name = 'renamed' WHERE id = $1",
        vec![legacy.id(d(2))],
    )
    .await;
    let mut expected: Vec<LinkRow> = before
        .into_iter()
        .filter(|l| l.deployment != d(1))
        .collect();
    expected.push(LinkRow::new(new, A1, json!({})));
    expected.push(LinkRow::new(d(5), A2, json!({})));
    expected.push(LinkRow::new(d(10), A_FOREIGN, json!({})));
    expected.sort_by_key(|link| (link.deployment, link.agent));
    // The expand phase: each write reached the links in its own transaction.
    assert_eq!(read::links(&db).await, expected);

    Migrator::up(&db.conn, None)
        .await
        .expect("catch up and drop");
    assert_eq!(read::links(&db).await, expected);
    // Rejects are history: the deleted deployment's stay.
    assert_eq!(read::rejects(&db).await, rejects_before);
    // Nothing left to catch up. MariaDB keeps the (empty) table: statements the application
    // prepared while the capture wrote it open it again at every execution.
    let pending = read::columns(&db, "deployment_job_agent_backfill_pending").await;
    match db.backend {
        Backend::MariaDb => {
            assert_eq!(
                read::count(&db, "deployment_job_agent_backfill_pending").await,
                0
            )
        }
        _ => assert!(pending.is_empty(), "{pending:?}"),
    }
}

/// A backfill that fails half-way (here a trigger refuses one deployment's link) puts back
/// what the bulk load set aside (the join table's foreign keys and reverse index), says why,
/// and a rerun after the cause is gone finishes the job.
async fn a_failed_backfill_leaves_the_join_table_whole_and_a_rerun_finishes(db: TestDb) {
    let cases = cases(false);
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    seed(&legacy, &cases).await;
    Migrator::up(&db.conn, Some(2))
        .await
        .expect("the join table");
    // The join table whole: both keys cascading, and the reverse index.
    let key = |column: &str, parent: &str| tests::schema::ForeignKeyFacts {
        column: column.to_owned(),
        parent: parent.to_owned(),
        parent_column: "id".to_owned(),
        cascades: true,
    };
    let keys = vec![
        key("deployment_id", "deployment"),
        key("job_agent_id", "job_agent"),
    ];
    let index = || {
        tests::schema::index_columns(
            &db,
            "deployment_job_agent",
            "deployment_job_agent_job_agent_id_idx",
        )
    };
    let reverse_index = vec!["job_agent_id".to_owned(), "deployment_id".to_owned()];
    // Deployment d(1) of the cases: it has links.
    let refuse: &[&str] = match db.backend {
        Backend::Postgres => &[
            "CREATE FUNCTION jat_refuse_link() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER jat_refuse_link BEFORE INSERT ON deployment_job_agent FOR EACH ROW \
             WHEN (NEW.deployment_id = '00000000-0000-0000-0000-00000000d001') \
             EXECUTE FUNCTION jat_refuse_link()",
        ],
        Backend::MariaDb => &[
            "CREATE TRIGGER jat_refuse_link BEFORE INSERT ON deployment_job_agent FOR EACH ROW \
             IF NEW.deployment_id = '00000000-0000-0000-0000-00000000d001' THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'; END IF",
        ],
        Backend::Sqlite => &[
            "CREATE TRIGGER jat_refuse_link BEFORE INSERT ON deployment_job_agent \
             WHEN NEW.deployment_id = '00000000-0000-0000-0000-00000000d001' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
    };
    for sql in refuse {
        db.exec(sql, vec![]).await;
    }
    let error = Migrator::up(&db.conn, None)
        .await
        .expect_err("the backfill must fail");
    assert!(error.to_string().contains("refused by the test"), "{error}");
    assert_eq!(
        tests::schema::foreign_keys(&db, "deployment_job_agent").await,
        keys,
        "foreign keys put back"
    );
    assert_eq!(index().await, reverse_index, "reverse index put back");

    let drop = match db.backend {
        Backend::Postgres => "DROP TRIGGER jat_refuse_link ON deployment_job_agent",
        _ => "DROP TRIGGER jat_refuse_link",
    };
    db.exec(drop, vec![]).await;
    Migrator::up(&db.conn, None)
        .await
        .expect("a rerun finishes");
    let expected: Vec<LinkRow> = expected_links(&cases);
    assert_eq!(read::links(&db).await, expected);
}
