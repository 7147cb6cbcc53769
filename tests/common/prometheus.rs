//! A strict parser of the Prometheus text exposition format (0.0.4): what
//! `/metrics` serves must parse here, so a malformed line fails a test
//! instead of a scrape in production.

use std::collections::{BTreeMap, HashMap};

/// Samples by series (`name{a="x",b="y"}`, labels sorted).
#[derive(Debug, Default)]
pub(crate) struct Metrics(pub(crate) BTreeMap<String, f64>);

impl Metrics {
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.get(&series(name, labels)).copied()
    }

    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {}", series(name, labels)))
    }

    /// Samples of `name` whose labels include `label`, by that label's value.
    pub(crate) fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let prefix = format!("{name}{{");
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            if let Some(rest) = k.strip_prefix(&prefix)
                && let Some(i) = rest.find(&format!("{label}=\""))
            {
                let val: String = rest[i + label.len() + 2..].chars().take_while(|c| *c != '"').collect();
                out.insert(val, *v);
            }
        }
        out
    }
}

impl Metrics {
    /// Samples of `name` with `label` = `value`, keyed by the whole series.
    pub(crate) fn by_label_where(&self, name: &str, label: &str, value: &str) -> BTreeMap<String, f64> {
        let (prefix, needle) = (format!("{name}{{"), format!("{label}=\"{value}\""));
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && k.contains(&needle))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

pub(crate) fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    l.sort();
    if l.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", l.join(",")) }
}

fn metric_name_ok(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the text exposition format (0.0.4) and rejects anything off:
/// malformed lines, bad names or escapes, a TYPE after samples or twice,
/// samples without a TYPE, counters not ending in `_total`, duplicate series.
pub(crate) fn parse_prometheus(text: &str) -> Result<Metrics, String> {
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut sampled: std::collections::HashSet<String> = Default::default();
    let mut out = Metrics::default();
    for (n, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !metric_name_ok(name) {
                return Err(at("bad metric name"));
            }
            match kw {
                "HELP" => {}
                "TYPE" => {
                    let ty = parts.next().unwrap_or("");
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty) {
                        return Err(at("unknown type"));
                    }
                    if sampled.contains(name) || types.insert(name.to_owned(), ty.to_owned()).is_some() {
                        return Err(at("TYPE repeated or after samples"));
                    }
                }
                _ => return Err(at("unknown comment keyword")),
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value"))?;
        let name = &line[..name_end];
        if !metric_name_ok(name) {
            return Err(at("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels: Vec<(String, String)> = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            loop {
                while chars.peek().is_some_and(|(_, c)| *c == ',') {
                    chars.next();
                }
                match chars.peek() {
                    Some((i, '}')) => {
                        end = Some(*i);
                        break;
                    }
                    None => break,
                    _ => {}
                }
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if !metric_name_ok(&key) || key.contains(':') {
                    return Err(at("bad label name"));
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("label value not quoted"));
                }
                let mut val = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => val.push('\\'),
                            Some('"') => val.push('"'),
                            Some('n') => val.push('\n'),
                            _ => return Err(at("bad escape")),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' => return Err(at("raw newline")),
                        c => val.push(c),
                    }
                }
                if !closed {
                    return Err(at("unterminated label value"));
                }
                labels.push((key, val));
                match chars.peek() {
                    Some((_, ',')) | Some((_, '}')) => {}
                    _ => return Err(at("expected , or }")),
                }
            }
            let end = end.ok_or_else(|| at("unterminated labels"))?;
            rest = &r[end + 1..];
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| at("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at("bad value"))?,
        };
        if let Some(ts) = fields.next()
            && ts.parse::<i64>().is_err()
        {
            return Err(at("bad timestamp"));
        }
        if fields.next().is_some() {
            return Err(at("trailing fields"));
        }
        let family = [
            name,
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
            name.trim_end_matches("_bucket"),
        ]
        .into_iter()
        .find(|f| types.contains_key(*f))
        .ok_or_else(|| at("sample without a TYPE"))?;
        let ty = &types[family];
        if family != name && !["summary", "histogram"].contains(&ty.as_str()) {
            return Err(at("suffixed sample of a plain family"));
        }
        if ty == "counter" && !name.ends_with("_total") {
            return Err(at("counter not named *_total"));
        }
        sampled.insert(family.to_owned());
        let refs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if out.0.insert(series(name, &refs), value).is_some() {
            return Err(at("duplicate series"));
        }
    }
    Ok(out)
}

#[test]
fn the_prometheus_checker_rejects_what_it_should() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"2\",y=\"\\\\\"} 3\n\
              # TYPE s summary\ns_sum 1.5\ns_count 2\n";
    let m = parse_prometheus(ok).unwrap();
    assert_eq!(m.value("a_total", &[("x", "1\"2"), ("y", "\\")]), 3.0);
    assert_eq!(m.value("s_count", &[]), 2.0);
    for bad in [
        "a 1\n",                                 // no TYPE
        "# TYPE a gauge\na 1\n# TYPE a gauge\n", // TYPE twice / after samples
        "# TYPE a gauge\na{x=1} 1\n",            // unquoted
        "# TYPE a gauge\na{x=\"\\t\"} 1\n",      // bad escape
        "# TYPE a gauge\na one\n",               // bad value
        "# TYPE a gauge\na 1\na 2\n",            // duplicate
        "# TYPE c counter\nc 1\n",               // counter without _total
        "# TYPE a gauge\na 1",                   // no final newline
        "# TYPE a gauge\na_sum 1\n",             // suffix on a gauge
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

// ------------------------------------------------------------------ tests
