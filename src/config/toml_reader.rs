//! Reader for the native TOML format.
//!
//! TOML spells the same configuration as ecelerity.conf: a singleton scope is
//! a table (`[cluster]`), a named scope is a table under its keyword
//! (`[cluster.replicate.inbound_cidr]`, `[binding.foo]`), dictionaries are
//! tables and lists are arrays. This reader only converts TOML into the
//! shared tree, keeping positions; deciding what a table means is the
//! builder's job, the same as for ecelerity.conf.

use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::ConfigError;
use super::tree::{Entry, FileId, Scalar, ScalarKind, SourceMap, Span, Table, TableKind, Value};

/// Parses TOML text registered under `origin`.
pub fn parse_str(text: &str, origin: &Path, sources: &mut SourceMap) -> Result<Table, ConfigError> {
    let file = sources.add(origin);
    let lines = LineIndex::new(text);
    let doc = DeTable::parse(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| lines.locate(s.start));
        ConfigError::at(
            origin.display().to_string(),
            line,
            col,
            format!("invalid TOML: {}", e.message().trim()),
        )
    })?;
    let conv = Converter {
        file,
        lines: &lines,
    };
    Ok(conv.table(doc.get_ref(), conv.span(doc.span().start)))
}

/// Byte offset to 1-based line and column (in chars).
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    fn locate(&self, offset: usize) -> (u32, u32) {
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..offset.min(self.text.len()))
            .map_or(0, |s| s.chars().count());
        (to_u32(line), to_u32(col + 1))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

struct Converter<'a> {
    file: FileId,
    lines: &'a LineIndex<'a>,
}

impl Converter<'_> {
    fn span(&self, offset: usize) -> Span {
        let (line, col) = self.lines.locate(offset);
        Span {
            file: self.file,
            line,
            col,
        }
    }

    fn table(&self, t: &DeTable<'_>, span: Span) -> Table {
        let entries = t
            .iter()
            .map(|(k, v)| Entry {
                key: k.get_ref().to_string(),
                name: None,
                value: self.value(v),
                span: self.span(k.span().start),
            })
            .collect();
        Table {
            kind: TableKind::Toml,
            entries,
            span,
        }
    }

    fn value(&self, v: &Spanned<DeValue<'_>>) -> Value {
        let span = self.span(v.span().start);
        let scalar = |text: String, kind| Value::Scalar(Scalar { text, kind, span });
        match v.get_ref() {
            DeValue::String(s) => scalar(s.to_string(), ScalarKind::Quoted),
            DeValue::Integer(i) => scalar(
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                    .map_or_else(|_| i.as_str().to_string(), |n| n.to_string()),
                ScalarKind::Integer,
            ),
            DeValue::Float(f) => scalar(f.as_str().replace('_', ""), ScalarKind::Float),
            DeValue::Boolean(b) => scalar(b.to_string(), ScalarKind::Boolean),
            DeValue::Datetime(d) => scalar(d.to_string(), ScalarKind::Quoted),
            DeValue::Array(items) => {
                Value::List(items.iter().map(|i| self.value(i)).collect(), span)
            }
            DeValue::Table(t) => Value::Table(self.table(t, span)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Table, ConfigError> {
        parse_str(text, Path::new("t.toml"), &mut SourceMap::default())
    }

    #[test]
    fn tables_keep_order_types_and_positions() {
        let t = parse("[cluster]\nheartbeats_per_sec = 4\nlogs = { b = \"/x\", a = \"/y\" }\n[cluster.replicate.inbound_cidr]\n")
            .unwrap();
        let cluster = &t.entries[0];
        assert_eq!(cluster.key, "cluster");
        let Value::Table(c) = &cluster.value else {
            panic!("cluster is not a table")
        };
        let keys: Vec<&str> = c.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["heartbeats_per_sec", "logs", "replicate"]);
        let Value::Scalar(hb) = &c.entries[0].value else {
            panic!("not a scalar")
        };
        assert_eq!((hb.text.as_str(), hb.kind), ("4", ScalarKind::Integer));
        assert_eq!((c.entries[0].span.line, c.entries[0].span.col), (2, 1));
        let Value::Table(logs) = &c.entries[1].value else {
            panic!("logs is not a table")
        };
        assert_eq!(logs.entries[0].key, "b", "document order is kept");
    }

    #[test]
    fn hex_integers_become_decimal() {
        let t = parse("a = 0x10\n").unwrap();
        let Value::Scalar(s) = &t.entries[0].value else {
            panic!("not a scalar")
        };
        assert_eq!(s.text, "16");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = parse("[cluster]\nx = = 3\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.starts_with("invalid TOML"), "{}", e.message);
    }
}
