//! What SQLite's catalogue pragmas leave out of a table: each column's `CHECK` constraints
//! and collation, and the table's own `CHECK` constraints. SQLite keeps the `CREATE TABLE`
//! statement as it was written (`sqlite_master.sql`); this splits it at its top-level commas
//! and reads those clauses out of each part, minding quotes, brackets and comments, so a
//! rebuilt table keeps them word for word.

/// The clauses of one column that the pragmas do not give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnClauses {
    /// Its `[CONSTRAINT name] CHECK (…)` clauses, as written, joined by a space.
    pub checks: Option<String>,
    /// Its `COLLATE name` clause, as written.
    pub collation: Option<String>,
}

/// The parts of a `CREATE TABLE` statement that the rebuild keeps as written.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TableClauses {
    /// Per column (its name unquoted, as SQLite compares names: ASCII case-insensitively).
    columns: Vec<(String, ColumnClauses)>,
    /// The table's `[CONSTRAINT name] CHECK (…)` constraints, as written.
    checks: Vec<String>,
}

impl TableClauses {
    /// Reads `sql`, a `CREATE TABLE … ( … )` statement; nothing when it has no column list
    /// (`CREATE TABLE … AS SELECT`).
    pub fn parse(sql: &str) -> TableClauses {
        let Some(body) = column_list(sql) else {
            return TableClauses::default();
        };
        let mut clauses = TableClauses::default();
        for part in split_top_level(body) {
            let tokens = tokens(part);
            let Some(first) = tokens.first() else {
                continue;
            };
            let keyword = first.keyword();
            if matches!(keyword.as_str(), "PRIMARY" | "UNIQUE" | "FOREIGN") {
                continue;
            }
            if matches!(keyword.as_str(), "CONSTRAINT" | "CHECK") {
                if tokens.iter().any(|t| t.keyword() == "CHECK") {
                    clauses.checks.push(part.trim().to_owned());
                }
                continue;
            }
            clauses
                .columns
                .push((first.unquoted(), column_clauses(&tokens)));
        }
        clauses
    }

    /// The clauses of `column`.
    pub fn column(&self, column: &str) -> ColumnClauses {
        (self.columns.iter())
            .find(|(name, _)| name.eq_ignore_ascii_case(column))
            .map(|(_, clauses)| clauses.clone())
            .unwrap_or_default()
    }

    /// The table's checks that name none of `columns` (a check on a dropped column would
    /// make the rebuilt table fail to create).
    pub fn checks_without(&self, columns: &[&str]) -> Vec<String> {
        (self.checks.iter())
            .filter(|check| {
                !words(check)
                    .iter()
                    .any(|name| columns.iter().any(|c| c.eq_ignore_ascii_case(name)))
            })
            .cloned()
            .collect()
    }
}

/// Every word and quoted name in `text`, inside parentheses too, unquoted.
fn words(text: &str) -> Vec<String> {
    let mut found = vec![];
    for token in tokens(text) {
        match token.text.strip_prefix('(') {
            Some(group) => found.extend(words(group.strip_suffix(')').unwrap_or(group))),
            None => found.push(token.unquoted()),
        }
    }
    found
}

/// A column's `CHECK` and `COLLATE` clauses, each with the `CONSTRAINT name` before it.
fn column_clauses(tokens: &[Token<'_>]) -> ColumnClauses {
    let mut checks = vec![];
    let mut collation = None;
    let mut named_from = None;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].keyword().as_str() {
            "CONSTRAINT" => {
                named_from = Some(tokens[i].start);
                i += 2;
                continue;
            }
            "CHECK" if i + 1 < tokens.len() && tokens[i + 1].text.starts_with('(') => {
                let start = named_from.unwrap_or(tokens[i].start);
                checks.push(tokens[i].span_to(&tokens[i + 1], start));
                i += 2;
            }
            "COLLATE" if i + 1 < tokens.len() => {
                collation = Some(format!("COLLATE {}", tokens[i + 1].text));
                i += 2;
            }
            _ => i += 1,
        }
        named_from = None;
    }
    ColumnClauses {
        checks: (!checks.is_empty()).then(|| checks.join(" ")),
        collation,
    }
}

/// The text between the statement's first top-level `(` and its match.
fn column_list(sql: &str) -> Option<&str> {
    let tokens = tokens(sql);
    let open = tokens
        .iter()
        .take_while(|t| t.keyword() != "AS")
        .find(|t| t.text.starts_with('('))?;
    open.text.strip_prefix('(')?.strip_suffix(')')
}

/// `text` cut at its top-level commas.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = vec![];
    let mut from = 0;
    for token in tokens(text) {
        if token.text == "," {
            parts.push(&text[from..token.start]);
            from = token.start + 1;
        }
    }
    parts.push(&text[from..]);
    parts
}

/// A top-level token: a word, a quoted name or string, a whole parenthesised group, or one
/// other character.
#[derive(Debug)]
struct Token<'a> {
    text: &'a str,
    start: usize,
    source: &'a str,
}

impl Token<'_> {
    /// The token as a keyword: upper case.
    fn keyword(&self) -> String {
        self.text.to_ascii_uppercase()
    }

    /// A name without its quotes (`"a""b"` → `a"b`, `[x]` → `x`, `` `y` `` → `y`).
    fn unquoted(&self) -> String {
        let text = self.text;
        let quoted = |close: char| {
            let inner = &text[1..text.len().saturating_sub(1).max(1)];
            inner.replace(&format!("{close}{close}"), &close.to_string())
        };
        match text.chars().next() {
            Some('"') => quoted('"'),
            Some('`') => quoted('`'),
            Some('\'') => quoted('\''),
            Some('[') => text[1..text.len().saturating_sub(1).max(1)].to_owned(),
            _ => text.to_owned(),
        }
    }

    /// The source text from `start` to the end of `last`.
    fn span_to(&self, last: &Token<'_>, start: usize) -> String {
        self.source[start..last.start + last.text.len()].to_owned()
    }
}

/// The top-level tokens of `text`; comments and white space are skipped.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut found = vec![];
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if let Some(end) = comment_end(bytes, i) {
            i = end;
            continue;
        }
        let end = match bytes[i] {
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'(' => group_end(bytes, i),
            b if is_word_byte(b) => (i..bytes.len())
                .find(|&j| !is_word_byte(bytes[j]))
                .unwrap_or(bytes.len()),
            _ => quoted_end(bytes, i).unwrap_or(i + 1),
        };
        found.push(Token {
            text: &text[start..end],
            start,
            source: text,
        });
        i = end;
    }
    found
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Where a comment that opens at `from` ends, if one does.
fn comment_end(bytes: &[u8], from: usize) -> Option<usize> {
    let to_end = |found: Option<usize>, past: usize| found.map_or(bytes.len(), |n| n + past);
    match (bytes[from], bytes.get(from + 1)) {
        (b'-', Some(b'-')) => Some(to_end(find_from(bytes, from, b"\n"), 1)),
        (b'/', Some(b'*')) => Some(to_end(find_from(bytes, from + 2, b"*/"), 2)),
        _ => None,
    }
}

/// Where a quoted name or string that opens at `from` ends (a doubled quote stays inside),
/// if one does.
fn quoted_end(bytes: &[u8], from: usize) -> Option<usize> {
    let close = match bytes[from] {
        quote @ (b'"' | b'\'' | b'`') => quote,
        b'[' => return Some(find_from(bytes, from, b"]").map_or(bytes.len(), |n| n + 1)),
        _ => return None,
    };
    let mut i = from + 1;
    while i < bytes.len() {
        if bytes[i] == close {
            if bytes.get(i + 1) == Some(&close) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    Some(bytes.len())
}

/// Where the parenthesised group that opens at `from` ends, past its `)`.
fn group_end(bytes: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    let mut i = from;
    while i < bytes.len() {
        if let Some(end) = comment_end(bytes, i).or_else(|| quoted_end(bytes, i)) {
            i = end;
            continue;
        }
        match bytes[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    (from..bytes.len()).find(|&i| bytes[i..].starts_with(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAND_WRITTEN: &str = "CREATE TABLE \"deployment\" (
        id TEXT PRIMARY KEY, -- a comment, with a comma (and a bracket
        name TEXT NOT NULL COLLATE NOCASE CHECK (length(name) > 0),
        [job_agents] TEXT NOT NULL DEFAULT '[]' CONSTRAINT agents_json
          CHECK (json_valid(job_agents) AND json_type(job_agents) = 'array'),
        `job_agent_config` TEXT CHECK(json_valid(\"job_agent_config\")) /* c, ) */ CHECK (1),
        note TEXT DEFAULT 'a, (b'' CHECK',
        UNIQUE (name),
        CONSTRAINT only_one CHECK (job_agents = '[]' OR note IS NULL),
        CHECK (length(id) = 36),
        FOREIGN KEY (id) REFERENCES other(id)
      )";

    #[test]
    fn a_columns_checks_and_collation_are_read_as_written() {
        let table = TableClauses::parse(HAND_WRITTEN);
        assert_eq!(
            table.column("NAME"),
            ColumnClauses {
                checks: Some("CHECK (length(name) > 0)".to_owned()),
                collation: Some("COLLATE NOCASE".to_owned()),
            }
        );
        assert_eq!(
            table.column("job_agents").checks.as_deref(),
            Some(
                "CONSTRAINT agents_json\n          \
                 CHECK (json_valid(job_agents) AND json_type(job_agents) = 'array')"
            )
        );
        assert_eq!(
            table.column("job_agent_config").checks.as_deref(),
            Some("CHECK(json_valid(\"job_agent_config\")) CHECK (1)")
        );
        assert_eq!(table.column("note"), ColumnClauses::default());
        assert_eq!(table.column("id"), ColumnClauses::default());
        assert_eq!(table.column("missing"), ColumnClauses::default());
    }

    #[test]
    fn table_checks_on_a_dropped_column_are_left_out() {
        let table = TableClauses::parse(HAND_WRITTEN);
        assert_eq!(
            table.checks_without(&[]),
            [
                "CONSTRAINT only_one CHECK (job_agents = '[]' OR note IS NULL)",
                "CHECK (length(id) = 36)"
            ]
        );
        assert_eq!(
            table.checks_without(&["JOB_AGENTS"]),
            ["CHECK (length(id) = 36)"]
        );
    }

    #[test]
    fn a_table_without_a_column_list_has_no_clauses() {
        let table = TableClauses::parse("CREATE TABLE t AS SELECT 1 AS a");
        assert_eq!(table, TableClauses::default());
    }
}
