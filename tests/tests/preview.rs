//! The preview reports what `up` then does, and changes nothing.

use migration::context::Context;
use std::collections::BTreeMap;

use migration::{Migrator, MigratorTrait};
use serde_json::json;
use tests::legacy::{Legacy, LegacySchema};
use tests::{Backend, TestDb, on_every_backend, read};
use uuid::Uuid;

on_every_backend!(preview_changes_nothing_and_foretells_up);

async fn preview_changes_nothing_and_foretells_up(db: TestDb) {
    let legacy = Legacy::build(&db, LegacySchema::HandBuilt).await;
    let ws = Uuid::from_u128(0xaaa);
    let (agent, other) = (Uuid::from_u128(0xa1), Uuid::from_u128(0xa2));
    legacy.workspace(ws).await;
    legacy.agent(agent, Some(ws)).await;
    legacy.agent(other, None).await;
    let messy = [
        json!([agent.to_string(), {"ref": other.to_string(), "config": {"n": 1}}]).to_string(),
        json!([agent.to_string(), agent.to_string(), "nope", 7]).to_string(),
        json!({"ref": agent.to_string()}).to_string(),
        json!([{"ref": Uuid::from_u128(9).to_string(), "selector": "x"}]).to_string(),
    ];
    for (n, job_agents) in messy.iter().enumerate() {
        legacy
            .deployment(
                Uuid::from_u128(0xd0 + n as u128),
                Some(ws),
                None,
                "{}",
                job_agents,
            )
            .await;
    }
    legacy
        .deployment(
            Uuid::from_u128(0xdf),
            None,
            Some(agent),
            r#"{"a": 1}"#,
            &messy[0],
        )
        .await;
    if db.backend != Backend::Postgres {
        legacy
            .deployment(Uuid::from_u128(0xde), None, None, "{}", "[oops")
            .await;
    }

    let before = read::fingerprint(&db).await;
    let preview = migration::backfill::preview(&Context::default(), &db.conn)
        .await
        .expect("preview");
    assert_eq!(
        read::fingerprint(&db).await,
        before,
        "the preview changed the database"
    );

    Migrator::up(&db.conn, None).await.expect("up");
    assert_ne!(
        read::fingerprint(&db).await,
        before,
        "the fingerprint must see changes"
    );
    assert_eq!(preview.links, read::links(&db).await.len() as u64);
    let mut recorded: BTreeMap<String, u64> = BTreeMap::new();
    for reject in read::rejects(&db).await {
        *recorded.entry(reject.reason).or_default() += 1;
    }
    let foretold: BTreeMap<String, u64> = preview
        .rejects
        .iter()
        .map(|(reason, found)| (reason.as_str().to_owned(), found.count))
        .collect();
    assert_eq!(foretold, recorded);
    // The duplicate and bad entries, the non-array and the unknown agent change meaning;
    // the shadowed entries of the `job_agent_id` row do not.
    let changed = if db.backend == Backend::Postgres {
        3
    } else {
        4
    };
    assert_eq!(preview.changed.count, changed, "{:?}", preview.changed);
    assert!(
        !preview
            .changed
            .ids
            .contains(&Uuid::from_u128(0xdf).to_string())
    );
}
