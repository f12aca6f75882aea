//! Generated legacy databases: whatever the rows hold, `up` accounts for every legacy value,
//! carries configs over exactly, never links across workspaces, and `down` then `up` gives
//! the same links and rejects. The checks are invariants, not a second copy of the rules.
//!
//! Each backend gets generated databases of 1 to `MAX_DEPLOYMENTS_PER_CASE` deployments
//! until at least `MIN_DEPLOYMENTS` were checked (`PROPTEST_MIN_DEPLOYMENTS` overrides it).
//! A failing case is shrunk and printed as the SQL that builds it.
#![cfg(feature = "runtime-tokio")]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use migration::{Migrator, MigratorTrait};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::{ConnectionTrait, Value};
use tests::legacy::{Legacy, LegacySchema};
use tests::read::{self, LinkRow, RejectRow};
use tests::{Backend, TestDb};
use uuid::Uuid;

const MAX_DEPLOYMENTS_PER_CASE: usize = 1_000;
const MIN_DEPLOYMENTS: usize = 10_000;
const WORKSPACES: u128 = 3;
/// Agents: (workspace index or none).
const AGENTS: [Option<u128>; 6] = [Some(0), Some(0), Some(1), None, Some(2), None];
const MISSING_AGENT: Uuid = Uuid::from_u128(0xdead_beef);

fn workspace_id(n: u128) -> Uuid {
    Uuid::from_u128(0x1000 + n)
}

fn agent_id(n: usize) -> Uuid {
    Uuid::from_u128(0xa000 + n as u128)
}

/// One generated legacy deployment; JSON columns as stored text.
#[derive(Clone, Debug)]
struct LegacyRow {
    workspace: Option<u128>,
    job_agent: Option<usize>,
    job_agent_config: String,
    job_agents: String,
}

/// A generated legacy database. Its `Debug` is the SQL that builds it.
#[derive(Clone)]
struct World {
    deployments: Vec<LegacyRow>,
}

fn deployment_id(index: usize) -> Uuid {
    Uuid::from_u128(0xd000_0000 + index as u128)
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
        let id = |id: Option<Uuid>| id.map_or("NULL".to_owned(), |id| quote(&id.to_string()));
        writeln!(f, "-- the legacy tables, then:")?;
        for n in 0..WORKSPACES {
            writeln!(
                f,
                "INSERT INTO workspace (id, name) VALUES ({}, 'w');",
                id(Some(workspace_id(n)))
            )?;
        }
        for (n, ws) in AGENTS.iter().enumerate() {
            let ws = id(ws.map(workspace_id));
            writeln!(
                f,
                "INSERT INTO job_agent (id, workspace_id, name) VALUES ({}, {ws}, 'a');",
                id(Some(agent_id(n)))
            )?;
        }
        for (n, row) in self.deployments.iter().enumerate() {
            writeln!(
                f,
                "INSERT INTO deployment (id, name, job_agent_id, job_agent_config, workspace_id, job_agents) \
                 VALUES ({}, 'd', {}, {}, {}, {});",
                id(Some(deployment_id(n))),
                id(row.job_agent.map(agent_id)),
                quote(&row.job_agent_config),
                id(row.workspace.map(workspace_id)),
                quote(&row.job_agents),
            )?;
        }
        Ok(())
    }
}

/// Digits no `f64` holds, unicode, escapes, nesting.
fn json_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("123456789012345678901234567890.25".to_owned()),
        Just("-1e-7".to_owned()),
        Just("\"h\\u00e9llo ☃ 👩‍🚀\"".to_owned()),
        Just("\"'; DROP TABLE deployment; --\"".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
    ]
}

fn json_object() -> impl Strategy<Value = String> {
    prop::collection::vec(("[a-z]{1,4}", json_scalar()), 0..4).prop_map(|fields| {
        let fields: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        format!("{{{}}}", fields.join(", "))
    })
}

/// Any config: absent, null, an object, or something that is not an object.
fn config() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => json_object().prop_map(Some),
        1 => Just(None),
        1 => Just(Some("null".to_owned())),
        1 => json_scalar().prop_map(Some),
        1 => Just(Some("[1, {\"a\": 2}]".to_owned())),
    ]
}

/// A reference: to an agent (in any case, any UUID spelling), to no agent, or not a UUID.
fn reference() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..AGENTS.len()).prop_map(|n| agent_id(n).to_string()),
        1 => (0..AGENTS.len()).prop_map(|n| agent_id(n).to_string().to_uppercase()),
        1 => (0..AGENTS.len()).prop_map(|n| agent_id(n).simple().to_string()),
        1 => Just(MISSING_AGENT.to_string()),
        1 => Just("not-a-uuid".to_owned()),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    let object =
        (reference(), config(), prop::option::of(json_scalar())).prop_map(|(r, config, extra)| {
            let mut fields = vec![format!("\"ref\": \"{r}\"")];
            fields.extend(config.map(|c| format!("\"config\": {c}")));
            fields.extend(extra.map(|e| format!("\"selector\": {e}")));
            format!("{{{}}}", fields.join(", "))
        });
    prop_oneof![
        6 => object,
        2 => reference().prop_map(|r| format!("\"{r}\"")),
        1 => json_scalar(),
        1 => Just("[1, [2]]".to_owned()),
        1 => Just("{\"config\": {}}".to_owned()),
        1 => Just("{\"ref\": 5}".to_owned()),
    ]
}

fn job_agents(text_columns: bool) -> impl Strategy<Value = String> {
    let array = prop::collection::vec(entry(), 0..7).prop_map(|e| format!("[{}]", e.join(", ")));
    let invalid = if text_columns { 1 } else { 0 };
    prop_oneof![
        8 => array,
        1 => Just("null".to_owned()),
        1 => prop_oneof![json_object(), json_scalar()],
        invalid => Just("[{\"ref\": oops".to_owned()),
    ]
}

fn job_agent_config(text_columns: bool) -> impl Strategy<Value = String> {
    let invalid = if text_columns { 1 } else { 0 };
    prop_oneof![
        4 => Just("{}".to_owned()),
        2 => json_object(),
        1 => Just("null".to_owned()),
        1 => json_scalar(),
        invalid => Just("{not json".to_owned()),
    ]
}

fn world(text_columns: bool) -> impl Strategy<Value = World> {
    let row = (
        prop::option::of(0..WORKSPACES),
        prop::option::weighted(0.2, 0..AGENTS.len()),
        job_agent_config(text_columns),
        job_agents(text_columns),
    )
        .prop_map(
            |(workspace, job_agent, job_agent_config, job_agents)| LegacyRow {
                workspace,
                job_agent,
                job_agent_config,
                job_agents,
            },
        );
    prop::collection::vec(row, 1..=MAX_DEPLOYMENTS_PER_CASE)
        .prop_map(|deployments| World { deployments })
}

static CASE: AtomicUsize = AtomicUsize::new(0);

fn run(backend: Backend, prefix: &str) {
    let minimum = std::env::var("PROPTEST_MIN_DEPLOYMENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MIN_DEPLOYMENTS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Text columns (MariaDB LONGTEXT, SQLite TEXT) can hold text that is not JSON.
    let text_columns = backend != Backend::Postgres;
    let checked = AtomicUsize::new(0);
    let databases = AtomicUsize::new(0);
    while checked.load(Ordering::SeqCst) < minimum {
        let config = Config {
            cases: 10,
            max_shrink_iters: 256,
            failure_persistence: None,
            ..Config::default()
        };
        let result = TestRunner::new(config).run(&world(text_columns), |world| {
            let name = format!("{prefix}_{}", CASE.fetch_add(1, Ordering::SeqCst));
            let size = world.deployments.len();
            runtime.block_on(check(backend, &name, world))?;
            checked.fetch_add(size, Ordering::SeqCst);
            databases.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
    println!(
        "{backend:?}: {} generated deployments checked in {} databases",
        checked.load(Ordering::SeqCst),
        databases.load(Ordering::SeqCst)
    );
}

mod postgres {
    #[test]
    fn generated_legacy_databases_migrate_losslessly() {
        super::run(super::Backend::Postgres, "pg_prop");
    }
}

mod mariadb {
    #[test]
    fn generated_legacy_databases_migrate_losslessly() {
        super::run(super::Backend::MariaDb, "my_prop");
    }
}

mod sqlite {
    #[test]
    fn generated_legacy_databases_migrate_losslessly() {
        super::run(super::Backend::Sqlite, "lite_prop");
    }
}

async fn check(backend: Backend, name: &str, world: World) -> Result<(), TestCaseError> {
    let db = TestDb::create(backend, name).await;
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    for n in 0..WORKSPACES {
        legacy.workspace(workspace_id(n)).await;
    }
    for (n, ws) in AGENTS.iter().enumerate() {
        legacy.agent(agent_id(n), ws.map(workspace_id)).await;
    }
    for (n, row) in world.deployments.iter().enumerate() {
        let (ws, agent) = (row.workspace.map(workspace_id), row.job_agent.map(agent_id));
        legacy
            .deployment(
                deployment_id(n),
                ws,
                agent,
                &row.job_agent_config,
                &row.job_agents,
            )
            .await;
    }

    Migrator::up(&db.conn, None).await.map_err(fail)?;
    let links = read::links(&db).await;
    let rejects = read::rejects(&db).await;
    every_value_is_accounted_for(&world, &links, &rejects)?;
    no_link_crosses_workspaces(&world, &links)?;
    configs_are_carried_over_exactly(&db, &world, &links).await?;

    Migrator::down(&db.conn, Some(3)).await.map_err(fail)?;
    Migrator::up(&db.conn, None).await.map_err(fail)?;
    prop_assert_eq!(
        &read::links(&db).await,
        &links,
        "down then up changed the links"
    );
    prop_assert_eq!(
        &read::rejects(&db).await,
        &rejects,
        "down then up changed the rejects"
    );
    Ok(())
}

fn fail(error: sea_orm::DbErr) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

fn parse(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text).ok()
}

/// The agent a reference names, whatever its spelling.
fn named_agent(entry: &serde_json::Value) -> Option<Uuid> {
    let reference = match entry {
        serde_json::Value::String(r) => r,
        serde_json::Value::Object(o) => o.get("ref")?.as_str()?,
        _ => return None,
    };
    Uuid::parse_str(reference).ok()
}

/// Every entry is linked or recorded exactly once; every other legacy value likewise.
fn every_value_is_accounted_for(
    world: &World,
    links: &[LinkRow],
    rejects: &[RejectRow],
) -> Result<(), TestCaseError> {
    let mut links_of: HashMap<Uuid, Vec<&LinkRow>> = HashMap::new();
    links
        .iter()
        .for_each(|l| links_of.entry(l.deployment).or_default().push(l));
    let mut rejects_of: HashMap<Uuid, Vec<&RejectRow>> = HashMap::new();
    rejects
        .iter()
        .for_each(|r| rejects_of.entry(r.deployment).or_default().push(r));

    for (n, row) in world.deployments.iter().enumerate() {
        let id = deployment_id(n);
        let links = links_of.remove(&id).unwrap_or_default();
        let rejects = rejects_of.remove(&id).unwrap_or_default();
        let about = |column: &str, index: Option<i64>| {
            rejects
                .iter()
                .filter(|r| {
                    r.column == column && r.index == index && r.reason != "extra_keys_dropped"
                })
                .count()
        };
        let column_rejects = |column: &str| rejects.iter().filter(|r| r.column == column).count();
        let value = parse(&row.job_agents);
        let entries = match &value {
            Some(serde_json::Value::Array(entries)) => Some(entries.clone()),
            _ => None,
        };
        let whole_value_recorded = match &value {
            None => 1,
            Some(serde_json::Value::Null | serde_json::Value::Array(_)) => 0,
            Some(_) => 1,
        };
        prop_assert_eq!(
            about("job_agents", None),
            whole_value_recorded,
            "{}: whole job_agents",
            id
        );

        match row.job_agent {
            Some(agent) => {
                let linked = links.iter().filter(|l| l.agent == agent_id(agent)).count();
                prop_assert!(
                    links.len() == linked && linked <= 1,
                    "{}: links besides job_agent_id",
                    id
                );
                prop_assert_eq!(
                    linked + column_rejects("job_agent_id"),
                    1,
                    "{}: job_agent_id",
                    id
                );
                prop_assert_eq!(
                    column_rejects("job_agent_config"),
                    0,
                    "{}: config of the pair",
                    id
                );
                for index in 0..entries.as_ref().map_or(0, Vec::len) {
                    prop_assert_eq!(
                        about("job_agents", Some(index as i64)),
                        1,
                        "{}: shadowed [{}]",
                        id,
                        index
                    );
                }
            }
            None => {
                prop_assert_eq!(column_rejects("job_agent_id"), 0, "{}", id);
                let config_recorded = match parse(&row.job_agent_config) {
                    Some(serde_json::Value::Null) => 0,
                    Some(serde_json::Value::Object(o)) if o.is_empty() => 0,
                    _ => 1,
                };
                prop_assert_eq!(
                    column_rejects("job_agent_config"),
                    config_recorded,
                    "{}: config",
                    id
                );
                let entries = entries.unwrap_or_default();
                let mut unrecorded = 0;
                for index in 0..entries.len() {
                    let recorded = about("job_agents", Some(index as i64));
                    prop_assert!(
                        recorded <= 1,
                        "{}: [{}] recorded {} times",
                        id,
                        index,
                        recorded
                    );
                    unrecorded += 1 - recorded;
                }
                prop_assert_eq!(
                    links.len(),
                    unrecorded,
                    "{}: one link per unrecorded entry",
                    id
                );
                for link in &links {
                    let named = entries.iter().any(|e| named_agent(e) == Some(link.agent));
                    prop_assert!(named, "{}: link to {} named by no entry", id, link.agent);
                }
            }
        }
    }
    prop_assert!(
        links_of.is_empty() && rejects_of.is_empty(),
        "rows for unknown deployments"
    );
    Ok(())
}

fn no_link_crosses_workspaces(world: &World, links: &[LinkRow]) -> Result<(), TestCaseError> {
    let index: HashMap<Uuid, usize> = (0..world.deployments.len())
        .map(|n| (deployment_id(n), n))
        .collect();
    for link in links {
        let deployment = world.deployments[index[&link.deployment]].workspace;
        let agent = (0..AGENTS.len())
            .find(|&n| agent_id(n) == link.agent)
            .map(|n| AGENTS[n]);
        let agent = agent
            .ok_or_else(|| TestCaseError::fail(format!("link to unknown agent {}", link.agent)))?;
        if let (Some(d), Some(a)) = (deployment, agent) {
            prop_assert_eq!(
                d,
                a,
                "link {} → {} crosses workspaces",
                link.deployment,
                link.agent
            );
        }
    }
    Ok(())
}

/// Each link's config equals, under the database's own JSON comparison, the config of a
/// source entry naming that agent (`{}` for none or null) or of `job_agent_config`.
async fn configs_are_carried_over_exactly(
    db: &TestDb,
    world: &World,
    links: &[LinkRow],
) -> Result<(), TestCaseError> {
    let stored = stored_configs(db).await;
    let mut pairs: Vec<(String, String, String)> = vec![];
    for (n, row) in world.deployments.iter().enumerate() {
        let id = deployment_id(n);
        let mut candidates: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
        if let Some(agent) = row.job_agent {
            candidates
                .entry(agent_id(agent))
                .or_default()
                .push(normalize(Some(&row.job_agent_config)));
        } else if let Some(serde_json::Value::Array(entries)) = parse(&row.job_agents) {
            let raw = raw_entries(&row.job_agents);
            for (entry, raw) in entries.iter().zip(raw) {
                if let Some(agent) = named_agent(entry) {
                    candidates
                        .entry(agent)
                        .or_default()
                        .push(normalize(raw_config(raw).as_deref()));
                }
            }
        }
        for link in links.iter().filter(|l| l.deployment == id) {
            let key = format!("{}/{}", link.deployment, link.agent);
            for candidate in candidates.get(&link.agent).into_iter().flatten() {
                pairs.push((
                    key.clone(),
                    stored[&(link.deployment, link.agent)].clone(),
                    candidate.clone(),
                ));
            }
        }
    }
    let unmatched = unmatched_keys(db, &pairs).await;
    let detail: Vec<&(String, String, String)> =
        pairs.iter().filter(|p| unmatched.contains(&p.0)).collect();
    prop_assert!(
        unmatched.is_empty(),
        "links whose config equals no source config: {:?}",
        detail
    );
    Ok(())
}

/// `{}` for a missing or null config, the text itself otherwise.
fn normalize(config: Option<&str>) -> String {
    match config.map(str::trim) {
        None | Some("null") => "{}".to_owned(),
        Some(text) => text.to_owned(),
    }
}

fn raw_entries(array: &str) -> Vec<&serde_json::value::RawValue> {
    serde_json::from_str(array).unwrap_or_default()
}

fn raw_config(entry: &serde_json::value::RawValue) -> Option<String> {
    let object: HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(entry.get()).ok()?;
    object.get("config").map(|c| c.get().to_owned())
}

/// Each link's config as the database prints it.
async fn stored_configs(db: &TestDb) -> HashMap<(Uuid, Uuid), String> {
    let json = match db.backend {
        Backend::Postgres => "CAST(config AS text)",
        _ => "config",
    };
    let sql = format!("SELECT deployment_id, job_agent_id, {json} FROM deployment_job_agent");
    let rows = db
        .conn
        .query_all_raw(db.statement(&sql, vec![]))
        .await
        .expect("configs");
    rows.iter()
        .map(|row| {
            let id = |i| match db.backend {
                Backend::Postgres => row.try_get_by_index::<Uuid>(i).unwrap(),
                _ => Uuid::parse_str(&row.try_get_by_index::<String>(i).unwrap()).unwrap(),
            };
            ((id(0), id(1)), row.try_get_by_index::<String>(2).unwrap())
        })
        .collect()
}

/// The keys that have no pair `(stored, candidate)` that the database finds equal.
async fn unmatched_keys(db: &TestDb, pairs: &[(String, String, String)]) -> Vec<String> {
    let mut matched = std::collections::HashSet::new();
    // SQLite allows 500 terms in a compound SELECT. A key's pairs may span chunks.
    for chunk in pairs.chunks(400) {
        let equal = match db.backend {
            Backend::Postgres => "CAST(a AS jsonb) = CAST(b AS jsonb)",
            Backend::MariaDb => "JSON_EQUALS(a, b)",
            Backend::Sqlite => "json(a) = json(b)",
        };
        let cast = |n: usize| match db.backend {
            Backend::Postgres => format!("CAST(${n} AS text)"),
            _ => format!("${n}"),
        };
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "SELECT {} AS k, {} AS a, {} AS b",
                    cast(3 * i + 1),
                    cast(3 * i + 2),
                    cast(3 * i + 3)
                )
            })
            .collect();
        let sql = format!(
            "SELECT k FROM (SELECT k, MAX(CASE WHEN {equal} THEN 1 ELSE 0 END) AS ok \
             FROM ({}) v GROUP BY k) w WHERE ok = 1",
            rows.join(" UNION ALL ")
        );
        let values: Vec<Value> = chunk
            .iter()
            .flat_map(|(k, a, b)| [k.clone().into(), a.clone().into(), b.clone().into()])
            .collect();
        let rows = db
            .conn
            .query_all_raw(db.statement(&sql, values))
            .await
            .expect("compare");
        matched.extend(
            rows.iter()
                .map(|row| row.try_get_by_index::<String>(0).unwrap()),
        );
    }
    let mut unmatched: Vec<String> = pairs
        .iter()
        .map(|p| p.0.clone())
        .filter(|k| !matched.contains(k))
        .collect();
    unmatched.dedup();
    unmatched
}
