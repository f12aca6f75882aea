//! PostgreSQL's expand phase: the rules as PL/pgSQL (`sync.sql`), filled in with our names
//! and the tables' declared types.

use crate::backends::SyncTarget;
use crate::backends::template::{SYNC_NAMES, fill};
use crate::tables::{
    DEPLOYMENT, JOIN_TABLE, RULE_HELPER_PREFIX, SYNC_FROM_LEGACY_INSERT_TRIGGER,
    SYNC_FROM_LEGACY_ROUTINE, SYNC_FROM_LEGACY_UPDATE_TRIGGER, SYNC_GUARD,
    SYNC_LEGACY_DEFAULTS_TRIGGER, SYNC_TO_LEGACY_ROUTINE, SYNC_TO_LEGACY_TRIGGER,
};

const SCRIPT: &str = include_str!("sync.sql");

/// The helper functions `sync.sql` defines, by their placeholder and name suffix.
const HELPERS: [(&str, &str); 8] = [
    ("uuid_fn", "uuid"),
    ("id_key_fn", "id_key"),
    ("json_fn", "json"),
    ("jsonb_fn", "jsonb"),
    ("string_fn", "string"),
    ("empty_fn", "empty"),
    ("reject_fn", "reject"),
    ("check_fn", "check"),
];

/// Rust's `char::is_whitespace`, which the rules trim with, as a PostgreSQL string.
const UNICODE_SPACE: &str = "E' \\t\\n\\r\\u000B\\u000C\\u0085\\u00A0\\u1680\\u2000\\u2001\\u2002\
     \\u2003\\u2004\\u2005\\u2006\\u2007\\u2008\\u2009\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000'";

/// The setting the triggers and the migration's own writes set while one side is written
/// from the other (custom settings need a dotted name).
pub fn guard() -> String {
    format!("{SYNC_GUARD}.active")
}

/// The script that creates the functions and triggers, as one text (one transaction).
pub fn install(target: &SyncTarget) -> String {
    let helpers: Vec<(String, String)> = HELPERS
        .iter()
        .map(|(key, suffix)| (key.to_string(), format!("{RULE_HELPER_PREFIX}{suffix}")))
        .collect();
    let agent_matches = match target.job_agent_id_type.as_str() {
        "uuid" => "a.id = agent_ref".to_owned(),
        // Ids kept as text: compared by what they mean, as the Rust rules compare them.
        _ => format!(
            "{}.{RULE_HELPER_PREFIX}uuid(btrim(CAST(a.id AS text), {UNICODE_SPACE})) = agent_ref",
            target.schema
        ),
    };
    let mut values: Vec<(&str, &str)> = SYNC_NAMES.to_vec();
    values.extend([
        ("schema", target.schema.as_str()),
        ("legacy_defaults_fn", SYNC_LEGACY_DEFAULTS_TRIGGER),
        ("deployment_id_type", &target.deployment_id_type),
        ("job_agent_id_type", &target.job_agent_id_type),
        ("job_agents_type", &target.job_agents_type),
        ("job_agent_config_type", &target.job_agent_config_type),
        ("unicode_space", UNICODE_SPACE),
        ("agent_matches", &agent_matches),
    ]);
    let guard = guard();
    values.push(("guard", &guard));
    values.extend(helpers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    fill(SCRIPT, &values)
}

/// Statements that remove what [`install`] created.
pub fn remove(schema: &str) -> Vec<String> {
    let mut statements = vec![
        format!(
            "DROP TRIGGER IF EXISTS {SYNC_FROM_LEGACY_INSERT_TRIGGER} ON {schema}.{DEPLOYMENT}"
        ),
        format!(
            "DROP TRIGGER IF EXISTS {SYNC_FROM_LEGACY_UPDATE_TRIGGER} ON {schema}.{DEPLOYMENT}"
        ),
        format!("DROP TRIGGER IF EXISTS {SYNC_TO_LEGACY_TRIGGER} ON {schema}.{JOIN_TABLE}"),
        format!("DROP TRIGGER IF EXISTS {SYNC_LEGACY_DEFAULTS_TRIGGER} ON {schema}.{DEPLOYMENT}"),
        format!("DROP FUNCTION IF EXISTS {schema}.{SYNC_LEGACY_DEFAULTS_TRIGGER}()"),
        format!("DROP FUNCTION IF EXISTS {schema}.{SYNC_FROM_LEGACY_ROUTINE}()"),
        format!("DROP FUNCTION IF EXISTS {schema}.{SYNC_TO_LEGACY_ROUTINE}()"),
    ];
    // Callers first: the check calls the others.
    for (_, suffix) in HELPERS.iter().rev() {
        statements.push(format!(
            "DROP FUNCTION IF EXISTS {schema}.{RULE_HELPER_PREFIX}{suffix}"
        ));
    }
    statements
}
