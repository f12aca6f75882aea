//! Generated legacy databases: whatever the rows hold, `up` accounts for every legacy value,
//! carries configs over exactly, never links across workspaces, and `down` then `up` gives
//! the same links and rejects. The checks are invariants, not a second copy of the rules.
//!
//! Each backend gets generated databases of 1 to `MAX_DEPLOYMENTS_PER_CASE` deployments
//! until at least `MIN_DEPLOYMENTS` were checked (`PROPTEST_MIN_DEPLOYMENTS` overrides it).
//! A failing case is shrunk and printed as the SQL that builds it.
#![cfg(feature = "runtime-tokio")]

use std::collections::{BTreeMap, HashMap};

use migration::{Migrator, MigratorTrait};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sea_orm::{ConnectionTrait, Value};
use tests::generated::{self, AGENTS, World, agent_id, deployment_id};
use tests::legacy::{Legacy, LegacySchema};
use tests::read::{self, LinkRow, RejectRow};
use tests::{Backend, TestDb};
use uuid::Uuid;

const MIN_DEPLOYMENTS: usize = 10_000;

fn run(backend: Backend, prefix: &str) {
    generated::run(
        backend,
        prefix,
        MIN_DEPLOYMENTS,
        |backend, name, world| async move { check(backend, &name, world).await },
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
    World::write_agents(&legacy).await;
    world.write_deployments(&legacy).await;

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

/// Stored text as JSON, once trimmed of white space as the rules trim it (Unicode's, not
/// only JSON's).
fn parse(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text.trim()).ok()
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
    serde_json::from_str(array.trim()).unwrap_or_default()
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
