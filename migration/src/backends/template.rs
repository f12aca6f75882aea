//! SQL kept as SQL: a backend's longer scripts live in `.sql` files with `${name}`
//! placeholders, filled in here with our names and the tables' declared types (never with
//! data: values are always bound).

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
