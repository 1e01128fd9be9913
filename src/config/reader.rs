//! Reading one scope of the syntax tree into typed values.
//!
//! A [`ScopeReader`] is asked for options by name, with their defaults. While
//! answering it records three things, so that no other code has to repeat the
//! list of option names:
//! - which names it was asked for, so that whatever is left over is an unknown
//!   option and the nearest asked-for name is the suggestion;
//! - the effective value of every option and whether it is the default, which
//!   is what `eccluster check-config` prints;
//! - every problem, with its place, collected in a shared [`Ctx`] so that one
//!   run reports all errors.
//!
//! Scopes that belong to the host MTA (`Binding`, `ESMTP_Listener`, the top
//! level of ecelerity.conf) hold many options that are not ours; a reader made
//! [`Strictness::HostOwned`] ignores those, unless a name is so close to one of
//! ours that it is probably a misspelling of it.

use std::fmt::Write as _;

use super::error::{ConfigError, nearest};
use super::tree::{Entry, Scalar, ScalarKind, SourceMap, Span, Table, TableKind, Value};

/// Shared state of one build: where spans point, and what went wrong.
#[derive(Debug)]
pub struct Ctx<'s> {
    pub sources: &'s SourceMap,
    pub errors: Vec<ConfigError>,
    /// Options and scopes that were present but are not eccluster's (host MTA options).
    pub ignored: Vec<String>,
}

impl<'s> Ctx<'s> {
    pub fn new(sources: &'s SourceMap) -> Self {
        Ctx {
            sources,
            errors: Vec::new(),
            ignored: Vec::new(),
        }
    }

    /// Records an error at `span` about `option`.
    pub fn error(&mut self, span: Span, option: &str, message: impl Into<String>) {
        let e = self.located(span, message).with_option(option);
        self.errors.push(e);
    }

    pub fn located(&self, span: Span, message: impl Into<String>) -> ConfigError {
        ConfigError::at(
            self.sources.path(span.file).display().to_string(),
            span.line,
            span.col,
            message,
        )
    }
}

/// Whether unknown names in a scope are errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// eccluster's own scopes: every unknown name is an error.
    Ours,
    /// The host MTA's scopes: unknown names are noted and ignored unless they
    /// look like a misspelling of one of ours.
    HostOwned,
}

/// One line of the effective configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum Effective {
    /// An option; `value` is `None` when it is unset, and is rendered in
    /// ecelerity.conf syntax otherwise.
    Option {
        key: &'static str,
        value: Option<String>,
        default: bool,
    },
    Scope {
        keyword: &'static str,
        name: Option<String>,
        items: Vec<Effective>,
        /// The scope is absent and this is what eccluster assumes.
        default: bool,
    },
}

/// A value type an option can have.
pub trait OptionValue: Sized {
    /// What the operator should have written, for error messages.
    const EXPECTED: &'static str;
    fn parse(s: &Scalar) -> Option<Self>;
    /// The value in ecelerity.conf syntax.
    fn render(&self) -> String;
}

impl OptionValue for String {
    const EXPECTED: &'static str = "a string";
    fn parse(s: &Scalar) -> Option<Self> {
        Some(s.text.clone())
    }
    fn render(&self) -> String {
        quote(self)
    }
}

impl OptionValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse(s: &Scalar) -> Option<Self> {
        match s.text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "enabled" | "1" => Some(true),
            "false" | "no" | "off" | "disabled" | "0" => Some(false),
            _ => None,
        }
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

macro_rules! integer_option {
    ($t:ty, $expected:literal) => {
        impl OptionValue for $t {
            const EXPECTED: &'static str = $expected;
            fn parse(s: &Scalar) -> Option<Self> {
                if s.kind == ScalarKind::Float || s.kind == ScalarKind::Boolean {
                    return None;
                }
                s.text.trim().parse().ok()
            }
            fn render(&self) -> String {
                self.to_string()
            }
        }
    };
}
integer_option!(u32, "a whole number");
integer_option!(u16, "a whole number from 0 to 65535");
integer_option!(i64, "a whole number");

impl OptionValue for f64 {
    const EXPECTED: &'static str = "a number";
    fn parse(s: &Scalar) -> Option<Self> {
        if s.kind == ScalarKind::Boolean {
            return None;
        }
        s.text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
    }
    fn render(&self) -> String {
        if self.fract() == 0.0 && self.abs() < 1e15 {
            format!("{self:.1}")
        } else {
            self.to_string()
        }
    }
}

/// An octal file mode written as a string, e.g. `"0640"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode(pub u32);

impl OptionValue for Mode {
    const EXPECTED: &'static str = "an octal file mode such as \"0640\"";
    fn parse(s: &Scalar) -> Option<Self> {
        u32::from_str_radix(s.text.trim(), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .map(Mode)
    }
    fn render(&self) -> String {
        format!("\"{:04o}\"", self.0)
    }
}

/// Quotes a string in ecelerity.conf syntax.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads the entries of one scope; see the module docs.
#[derive(Debug)]
pub struct ScopeReader<'t> {
    path: String,
    entries: &'t [Entry],
    used: Vec<bool>,
    known: Vec<&'static str>,
    strictness: Strictness,
    effective: Vec<Effective>,
}

impl<'t> ScopeReader<'t> {
    /// A reader for a table; `path` names the scope in messages (`cluster`,
    /// `cluster.Replicate "x"`; empty for the top level).
    pub fn new(path: String, table: &'t Table, strictness: Strictness) -> Self {
        ScopeReader {
            path,
            entries: &table.entries,
            used: vec![false; table.entries.len()],
            known: Vec::new(),
            strictness,
            effective: Vec::new(),
        }
    }

    /// The option's full name for messages.
    pub fn option_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// All entries named `key` (case-insensitively), marking them used.
    fn take_all(&mut self, key: &'static str) -> Vec<&'t Entry> {
        self.known.push(key);
        let mut found = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.key.eq_ignore_ascii_case(key) {
                self.used[i] = true;
                found.push(e);
            }
        }
        found
    }

    /// Where `key` is set, if it is.
    pub fn span_of(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key))
            .map(|e| e.span)
    }

    /// The single entry named `key`; a second one is an error.
    fn take_one(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<&'t Entry> {
        let found = self.take_all(key);
        if let [first, rest @ ..] = found.as_slice() {
            for dup in rest {
                ctx.error(
                    dup.span,
                    &self.option_path(key),
                    format!(
                        "set more than once (first at line {}, col {})",
                        first.span.line, first.span.col
                    ),
                );
            }
        }
        found.first().copied()
    }

    /// The scalar given for `key`, reporting a list or scope as a type error.
    fn scalar(&mut self, ctx: &mut Ctx, key: &'static str, expected: &str) -> Option<&'t Scalar> {
        let entry = self.take_one(ctx, key)?;
        match &entry.value {
            Value::Scalar(s) if entry.name.is_none() => Some(s),
            other => {
                ctx.error(
                    entry.span,
                    &self.option_path(key),
                    format!("expected {expected}, found {}", other.describe()),
                );
                None
            }
        }
    }

    /// An optional option without a default, checked by `check`.
    pub fn maybe_checked<T: OptionValue>(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> Option<T> {
        let value = self.parse_scalar::<T>(ctx, key, &check);
        self.effective.push(Effective::Option {
            key,
            value: value.as_ref().map(T::render),
            default: value.is_none(),
        });
        value
    }

    /// An optional option without a default.
    pub fn maybe<T: OptionValue>(&mut self, ctx: &mut Ctx, key: &'static str) -> Option<T> {
        self.maybe_checked(ctx, key, |_| Ok(()))
    }

    /// An option with a default, checked by `check` (the default is not checked).
    pub fn get_checked<T: OptionValue>(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
        default: T,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> T {
        let (value, is_default) = match self.parse_scalar::<T>(ctx, key, &check) {
            Some(v) => (v, false),
            None => (default, true),
        };
        self.effective.push(Effective::Option {
            key,
            value: Some(value.render()),
            default: is_default,
        });
        value
    }

    /// An option with a default.
    pub fn get<T: OptionValue>(&mut self, ctx: &mut Ctx, key: &'static str, default: T) -> T {
        self.get_checked(ctx, key, default, |_| Ok(()))
    }

    fn parse_scalar<T: OptionValue>(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
        check: &impl Fn(&T) -> Result<(), String>,
    ) -> Option<T> {
        let s = self.scalar(ctx, key, T::EXPECTED)?;
        let Some(value) = T::parse(s) else {
            ctx.error(
                s.span,
                &self.option_path(key),
                format!("expected {}, found {}", T::EXPECTED, quote(&s.text)),
            );
            return None;
        };
        if let Err(why) = check(&value) {
            ctx.error(s.span, &self.option_path(key), why);
            return None;
        }
        Some(value)
    }

    /// A list of strings: `( a b )` or a TOML array; a single value is taken as
    /// a one-item list.
    pub fn list(&mut self, ctx: &mut Ctx, key: &'static str, default: &[&str]) -> Vec<String> {
        let mut items = None;
        if let Some(entry) = self.take_one(ctx, key) {
            match &entry.value {
                Value::List(values, _) => {
                    let mut out = Vec::new();
                    for v in values {
                        match v {
                            Value::Scalar(s) => out.push(s.text.clone()),
                            other => ctx.error(
                                other.span(),
                                &self.option_path(key),
                                format!(
                                    "list items must be single values, found {}",
                                    other.describe()
                                ),
                            ),
                        }
                    }
                    items = Some(out);
                }
                Value::Scalar(s) => items = Some(vec![s.text.clone()]),
                other => ctx.error(
                    entry.span,
                    &self.option_path(key),
                    format!("expected a list ( ... ), found {}", other.describe()),
                ),
            }
        }
        let is_default = items.is_none();
        let items = items.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
        let rendered = format!(
            "({})",
            items
                .iter()
                .map(|s| format!(" {}", quote(s)))
                .collect::<String>()
                + " "
        );
        self.effective.push(Effective::Option {
            key,
            value: Some(rendered),
            default: is_default,
        });
        items
    }

    /// A dictionary of strings: `[ k = "v" ]` or a TOML table.
    pub fn dict(
        &mut self,
        ctx: &mut Ctx,
        key: &'static str,
        default: &[(&str, &str)],
    ) -> Vec<(String, String, Span)> {
        let mut pairs = None;
        if let Some(entry) = self.take_one(ctx, key) {
            match &entry.value {
                Value::Table(t) if t.kind != TableKind::Scope => {
                    let mut out: Vec<(String, String, Span)> = Vec::new();
                    for e in &t.entries {
                        if let Some(prev) = out.iter().find(|(k, _, _)| *k == e.key) {
                            ctx.error(
                                e.span,
                                &self.option_path(key),
                                format!(
                                    "key '{}' given twice (first at line {}, col {})",
                                    e.key, prev.2.line, prev.2.col
                                ),
                            );
                            continue;
                        }
                        match &e.value {
                            Value::Scalar(s) => out.push((e.key.clone(), s.text.clone(), e.span)),
                            other => ctx.error(
                                e.span,
                                &self.option_path(key),
                                format!(
                                    "the value of '{}' must be a single value, found {}",
                                    e.key,
                                    other.describe()
                                ),
                            ),
                        }
                    }
                    pairs = Some(out);
                }
                other => ctx.error(
                    entry.span,
                    &self.option_path(key),
                    format!(
                        "expected a dictionary [ key = value ... ], found {}",
                        other.describe()
                    ),
                ),
            }
        }
        let is_default = pairs.is_none();
        let pairs = pairs.unwrap_or_else(|| {
            default
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string(), Span::default()))
                .collect()
        });
        let mut rendered = String::from("[");
        for (k, v, _) in &pairs {
            let _ = write!(rendered, "\n  {} = {}", dict_key(k), quote(v));
        }
        rendered.push_str(if pairs.is_empty() { " ]" } else { "\n]" });
        self.effective.push(Effective::Option {
            key,
            value: Some(rendered),
            default: is_default,
        });
        pairs
    }

    /// A singleton scope `keyword { ... }`; `None` when absent.
    pub fn scope(
        &mut self,
        ctx: &mut Ctx,
        keyword: &'static str,
        strictness: Strictness,
    ) -> Option<ScopeReader<'t>> {
        let entry = self.take_one(ctx, keyword)?;
        let path = self.option_path(keyword);
        match (&entry.value, &entry.name) {
            (Value::Table(t), None) if t.kind != TableKind::Dict => {
                Some(ScopeReader::new(path, t, strictness))
            }
            (Value::Table(_), Some(name)) => {
                ctx.error(
                    entry.span,
                    &path,
                    format!("this scope takes no name, found {}", quote(name)),
                );
                None
            }
            (other, _) => {
                ctx.error(
                    entry.span,
                    &path,
                    format!(
                        "expected a scope {keyword} {{ ... }}, found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    /// Every named scope `keyword "name" { ... }` (ecelerity) or
    /// `[keyword.name]` (TOML), in order; a repeated name is an error.
    pub fn named_scopes(
        &mut self,
        ctx: &mut Ctx,
        keyword: &'static str,
        strictness: Strictness,
    ) -> Vec<(String, Span, ScopeReader<'t>)> {
        let mut out: Vec<(String, Span, ScopeReader<'t>)> = Vec::new();
        for entry in self.take_all(keyword) {
            let mut instances: Vec<(&'t str, Span, &'t Table)> = Vec::new();
            match (&entry.value, &entry.name) {
                (Value::Table(t), Some(name)) if t.kind == TableKind::Scope => {
                    instances.push((name, entry.span, t));
                }
                // TOML: `[keyword.name]` puts each instance in a sub-table.
                (Value::Table(t), None) if t.kind == TableKind::Toml => {
                    for e in &t.entries {
                        match &e.value {
                            Value::Table(inner) => instances.push((&e.key, e.span, inner)),
                            other => ctx.error(
                                e.span,
                                &self.option_path(keyword),
                                format!(
                                    "expected a table [{}.\"{}\"], found {}",
                                    keyword.to_ascii_lowercase(),
                                    e.key,
                                    other.describe()
                                ),
                            ),
                        }
                    }
                }
                (Value::Table(t), None) if t.kind == TableKind::Scope => ctx.error(
                    entry.span,
                    &self.option_path(keyword),
                    format!("a {keyword} scope needs a name: {keyword} \"name\" {{ ... }}"),
                ),
                (other, _) => ctx.error(
                    entry.span,
                    &self.option_path(keyword),
                    format!(
                        "expected a scope {keyword} \"name\" {{ ... }}, found {}",
                        other.describe()
                    ),
                ),
            }
            for (name, span, table) in instances {
                if let Some((_, first, _)) = out.iter().find(|(n, _, _)| n == name) {
                    ctx.error(
                        span,
                        format!("{}.{keyword} {}", self.path, quote(name)).trim_start_matches('.'),
                        format!(
                            "duplicate scope (first at line {}, col {})",
                            first.line, first.col
                        ),
                    );
                    continue;
                }
                let path = format!("{} {}", self.option_path(keyword), quote(name));
                out.push((
                    name.to_string(),
                    span,
                    ScopeReader::new(path, table, strictness),
                ));
            }
        }
        out
    }

    /// Accepts a reference option that eccluster has no use for: it is not an
    /// error, and `check-config` lists it with `why`.
    pub fn ignore(&mut self, ctx: &mut Ctx, key: &'static str, why: &str) {
        if !self.take_all(key).is_empty() {
            ctx.ignored
                .push(format!("{} ({why})", self.option_path(key)));
        }
    }

    /// Records an absent, default-less scope or option in this scope's
    /// effective listing (shown as `# key is not set`).
    pub fn push_unset(&mut self, key: &'static str) {
        self.effective.push(Effective::Option {
            key,
            value: None,
            default: true,
        });
    }

    /// Records a finished sub-scope in this scope's effective listing.
    pub fn push_scope(
        &mut self,
        keyword: &'static str,
        name: Option<String>,
        items: Vec<Effective>,
    ) {
        self.effective.push(Effective::Scope {
            keyword,
            name,
            items,
            default: false,
        });
    }

    /// Reports what was left unread and returns the effective listing.
    pub fn finish(self, ctx: &mut Ctx) -> Vec<Effective> {
        for (i, entry) in self.entries.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            let suggestion = nearest(&entry.key, self.known.iter().copied());
            let what = if matches!(&entry.value, Value::Table(t) if t.kind == TableKind::Scope) {
                "scope"
            } else {
                "option"
            };
            match (self.strictness, suggestion) {
                (Strictness::HostOwned, None) => ctx.ignored.push(self.option_path(&entry.key)),
                (_, suggestion) => {
                    let scope = if self.path.is_empty() {
                        "the top level"
                    } else {
                        &self.path
                    };
                    let mut valid: Vec<&str> = self.known.clone();
                    valid.sort_unstable();
                    valid.dedup();
                    let message = if suggestion.is_some() || valid.is_empty() {
                        format!("unknown {what} in {scope}")
                    } else {
                        format!(
                            "unknown {what} in {scope}; valid here: {}",
                            valid.join(", ")
                        )
                    };
                    let e = ctx
                        .located(entry.span, message)
                        .with_option(self.option_path(&entry.key))
                        .with_suggestion(suggestion.map(str::to_string));
                    ctx.errors.push(e);
                }
            }
        }
        self.effective
    }
}

/// A dictionary key, quoted unless it is a plain word.
fn dict_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        k.to_string()
    } else {
        quote(k)
    }
}
