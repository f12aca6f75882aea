//! MariaDB's expand phase: the rules as stored routines (`sync.sql`), filled in with our
//! names, the tables' declared types, and how each id column is read as the rules compare
//! it.

use sea_orm_migration::sea_orm::{DbBackend, Statement};

use crate::backends::SyncTarget;
use crate::backends::template::{SYNC_NAMES, fill};
use crate::tables::{
    RULE_HELPER_PREFIX, SYNC_FROM_LEGACY_INSERT_TRIGGER, SYNC_FROM_LEGACY_UPDATE_TRIGGER,
    SYNC_GUARD, SYNC_LEGACY_DEFAULTS_TRIGGER, SYNC_TO_LEGACY_TRIGGERS,
};

const SCRIPT: &str = include_str!("sync.sql");

/// The helper routines `sync.sql` defines, by their placeholder and name suffix.
const HELPERS: [(&str, &str); 9] = [
    ("uuid_fn", "uuid"),
    ("trim_fn", "trim"),
    ("id_key_fn", "id_key"),
    ("hyphenated_fn", "hyphenated"),
    ("holds_nul_fn", "holds_nul"),
    ("empty_fn", "empty"),
    ("json_fn", "json"),
    ("reject_fn", "reject"),
    ("check_fn", "check"),
];

/// Rust's `char::is_whitespace`, which the rules trim with, as a PCRE character class.
const UNICODE_SPACE: &str = "[\\\\x{0009}-\\\\x{000D}\\\\x{0020}\\\\x{0085}\\\\x{00A0}\\\\x{1680}\
     \\\\x{2000}-\\\\x{200A}\\\\x{2028}\\\\x{2029}\\\\x{202F}\\\\x{205F}\\\\x{3000}]";

/// The session variable the triggers and the migration's own writes set while one side is
/// written from the other.
pub fn guard() -> String {
    format!("@{SYNC_GUARD}")
}

/// The guard's value while the migration writes both sides itself: it holds until cleared.
pub const HELD_BY_THE_MIGRATION: &str = "migration";

/// The guard's value a trigger sets: the start of the statement that fired it, so that it
/// holds for that statement only (see `sync.sql`).
const STATEMENT_START: &str = "CAST(NOW(6) AS CHAR)";

/// The script's statements, in order.
pub fn install(target: &SyncTarget) -> Vec<String> {
    script(target).0
}

/// The script's statements, and its version.
fn script(target: &SyncTarget) -> (Vec<String>, String) {
    let helper = |suffix: &str| format!("{RULE_HELPER_PREFIX}{suffix}");
    let (uuid, trim, id_key, hyphenated) = (
        helper("uuid"),
        helper("trim"),
        helper("id_key"),
        helper("hyphenated"),
    );
    // What a stored id means: a BINARY(16) id its bytes, any other its UUID spelling (the
    // column's declared type decides: MariaDB folds a branch it will not take, so an
    // expression must never meet the other kind of id).
    let key_of = |id: &str, declared: &str| match is_binary_uuid(declared) {
        true => format!("LOWER(HEX({id}))"),
        false => format!("{id_key}({id})"),
    };
    let display_of = |id: &str, declared: &str| match is_binary_uuid(declared) {
        true => format!("{hyphenated}(LOWER(HEX({id})))"),
        false => format!("COALESCE({hyphenated}({uuid}({trim}({id}))), {id})"),
    };
    let agent_type = target.job_agent_id_type.as_str();
    let agent_is_ref = match is_binary_uuid(agent_type) {
        true => "a.id = UNHEX(agent_ref)".to_owned(),
        // Text ids compare by their collation: upper and lower case alike.
        false => format!("a.id = {hyphenated}(agent_ref)"),
    };
    let agent_means_ref = format!("{} = agent_ref", key_of("a.id", agent_type));
    let single_type = target.legacy_job_agent_id_type.as_str();
    let single_agent_key = match is_binary_uuid(single_type) {
        true => "LOWER(HEX(single_agent))".to_owned(),
        false => format!("{uuid}({trim}(single_agent))"),
    };
    let guard = guard();
    let mut values: Vec<(&str, String)> = (SYNC_NAMES.iter())
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    values.extend([
        ("deployment_id_type", target.deployment_id_type.clone()),
        ("job_agent_id_type", target.job_agent_id_type.clone()),
        ("unicode_space", UNICODE_SPACE.to_owned()),
        (
            "guard_held",
            format!("({guard} <=> '{HELD_BY_THE_MIGRATION}' OR {guard} <=> {STATEMENT_START})"),
        ),
        ("guard_token", STATEMENT_START.to_owned()),
        ("guard", guard),
        ("agent_is_ref", agent_is_ref),
        ("agent_means_ref", agent_means_ref),
        (
            "agent_workspace_key",
            key_of("a.workspace_id", &target.job_agent_workspace_id_type),
        ),
        (
            "new_workspace_key",
            key_of("NEW.workspace_id", &target.deployment_workspace_id_type),
        ),
        ("single_agent_type", target.legacy_job_agent_id_type.clone()),
        ("single_agent_key", single_agent_key),
        (
            "single_agent_display",
            display_of("single_agent", single_type),
        ),
        (
            "link_agent_display",
            display_of("l.job_agent_id", agent_type),
        ),
    ]);
    values.extend(HELPERS.iter().map(|(key, suffix)| (*key, helper(suffix))));
    values.push(("version", VERSION_SLOT.to_owned()));
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let filled = fill(SCRIPT, &values);
    let version = version_of(&filled);
    let statements = (filled.replace(VERSION_SLOT, &version).split("\n$$\n"))
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect();
    (statements, version)
}

/// Where the version goes until the rest of the script is filled in.
const VERSION_SLOT: &str = "<version>";

/// This sync's version: a hash (FNV-1a, which does not change with the Rust release) of its
/// script once filled in, the version's own slot still a placeholder.
fn version_of(filled: &str) -> String {
    let hash = (filled.bytes()).fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("deployment_job_agent sync {hash:016x}")
}

/// One row, one number: 1 when every routine [`install`] creates is in place as it would
/// create it (same version comment), so the install can leave them alone; else 0.
pub fn routines_in_place(target: &SyncTarget) -> Statement {
    let (statements, version) = script(target);
    let routines = (statements.iter())
        .filter(|sql| !crate::backends::is_trigger_ddl(sql))
        .count() as u64;
    Statement::from_sql_and_values(
        DbBackend::MySql,
        "SELECT CAST(COUNT(*) = ? AS SIGNED) FROM information_schema.ROUTINES \
         WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_COMMENT = ?",
        [routines.into(), version.into()],
    )
}

/// Whether a column declared `declared` holds UUIDs as 16 bytes.
fn is_binary_uuid(declared: &str) -> bool {
    declared.to_ascii_lowercase().starts_with("binary(16)")
}

/// Statements that remove the triggers [`install`] created, and nothing else. MariaDB keeps,
/// in a statement the application prepared while the triggers existed, the routines those
/// triggers called, and opens them again at every execution even once the triggers are
/// gone: a routine dropped or replaced under it fails that statement (`PROCEDURE … does not
/// exist`) for as long as the application's connection lives. So the routines stay; nothing
/// calls them any more.
pub fn remove() -> Vec<String> {
    [
        SYNC_FROM_LEGACY_INSERT_TRIGGER,
        SYNC_FROM_LEGACY_UPDATE_TRIGGER,
        SYNC_LEGACY_DEFAULTS_TRIGGER,
    ]
    .into_iter()
    .chain(SYNC_TO_LEGACY_TRIGGERS)
    .map(|trigger| format!("DROP TRIGGER IF EXISTS {trigger}"))
    .collect()
}
