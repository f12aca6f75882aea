//! SQL kept as SQL: a backend's longer scripts live in `.sql` files with `${name}`
//! placeholders, filled in here with our names and the tables' declared types (never with
//! data: values are always bound).

use crate::tables::{
    DEPLOYMENT, JOB_AGENT, JOIN_TABLE, REJECT_TABLE, SYNC_FROM_LEGACY_INSERT_TRIGGER,
    SYNC_FROM_LEGACY_ROUTINE, SYNC_FROM_LEGACY_UPDATE_TRIGGER, SYNC_LEGACY_DEFAULTS_TRIGGER,
    SYNC_TO_LEGACY_ROUTINE, SYNC_TO_LEGACY_TRIGGER, SYNC_TO_LEGACY_TRIGGERS,
};

/// Our tables' and the sync's names, by the placeholders every backend's sync script uses
/// for them (a script uses those it needs).
pub const SYNC_NAMES: [(&str, &str); 13] = [
    ("deployment", DEPLOYMENT),
    ("job_agent", JOB_AGENT),
    ("join_table", JOIN_TABLE),
    ("reject_table", REJECT_TABLE),
    ("from_legacy_fn", SYNC_FROM_LEGACY_ROUTINE),
    ("to_legacy_fn", SYNC_TO_LEGACY_ROUTINE),
    ("from_legacy_insert", SYNC_FROM_LEGACY_INSERT_TRIGGER),
    ("from_legacy_update", SYNC_FROM_LEGACY_UPDATE_TRIGGER),
    ("to_legacy", SYNC_TO_LEGACY_TRIGGER),
    ("to_legacy_insert", SYNC_TO_LEGACY_TRIGGERS[0]),
    ("to_legacy_update", SYNC_TO_LEGACY_TRIGGERS[1]),
    ("to_legacy_delete", SYNC_TO_LEGACY_TRIGGERS[2]),
    ("legacy_defaults", SYNC_LEGACY_DEFAULTS_TRIGGER),
];

/// `template` with every `${key}` replaced by its value. Panics on a placeholder without a
/// value: a template and its caller disagree, which the snapshot tests catch.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').expect("a placeholder ends with }");
        let key = &after[..end];
        let value = values
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("no value for placeholder ${{{key}}}"))
            .1;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn placeholders_are_replaced_and_the_rest_kept() {
        let filled = fill("a ${x}.${y} {32} $f$", &[("x", "s"), ("y", "t")]);
        assert_eq!(filled, "a s.t {32} $f$");
    }

    #[test]
    #[should_panic(expected = "no value for placeholder ${z}")]
    fn a_placeholder_without_a_value_is_a_bug() {
        fill("${z}", &[]);
    }
}
