//! Java `.properties` files, as YCSB's workload files are written: `key=value`
//! or `key: value` or `key value`, `#` and `!` comments, a trailing
//! backslash continues a line. Enough of the format for workload files; no
//! unicode escapes.

use std::collections::BTreeMap;

/// Parses properties text. Later keys override earlier ones.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            logical.push_str(body);
            continue;
        }
        logical.push_str(line);
        let (key, value) = split_pair(&logical);
        if !key.is_empty() {
            out.insert(key.to_string(), value.to_string());
        }
        logical.clear();
    }
    out
}

fn split_pair(line: &str) -> (&str, &str) {
    let end = line.find(|c: char| c == '=' || c == ':' || c.is_whitespace()).unwrap_or(line.len());
    let key = &line[..end];
    let rest = line[end..].trim_start();
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim_start();
    (key, rest.trim_end())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn java_property_forms_parse() {
        let p =
            parse("# c\n! c\nrecordcount=1000\nreadproportion: 0.5\nworkload  site.ycsb.X\nlong=a\\\n  b\nempty=\n");
        assert_eq!(p["recordcount"], "1000");
        assert_eq!(p["readproportion"], "0.5");
        assert_eq!(p["workload"], "site.ycsb.X");
        assert_eq!(p["long"], "ab");
        assert_eq!(p["empty"], "");
    }
}
