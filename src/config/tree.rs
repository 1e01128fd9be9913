//! The format-neutral syntax tree that both configuration readers produce.
//!
//! Momentum's `ecelerity.conf` syntax and our TOML describe the same things —
//! options, singleton scopes (`cluster { }`), named scopes (`Binding "foo" { }`),
//! lists and dictionaries — so each reader only turns text into this tree, and
//! one typed builder (`build.rs`) turns the tree into [`crate::config::Config`].
//! That keeps validation, defaults and error wording in one place whatever the
//! input format was.
//!
//! Every node carries a [`Span`] so that an error found while building can name
//! the file, line and column the operator has to fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FileId(pub u32);

/// Where a piece of configuration came from: file, 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub line: u32,
    pub col: u32,
}

/// The names of every file (or in-memory source) a configuration was read from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceMap {
    files: Vec<PathBuf>,
}

impl SourceMap {
    /// Registers a source and returns its id. In-memory sources use a
    /// descriptive pseudo-path such as `<string>`.
    pub fn add(&mut self, path: &Path) -> FileId {
        self.files.push(path.to_path_buf());
        FileId(u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX))
    }

    /// The path registered for `id` (`<unknown>` for an id from another map).
    pub fn path(&self, id: FileId) -> &Path {
        self.files
            .get(id.0 as usize)
            .map_or(Path::new("<unknown>"), PathBuf::as_path)
    }

    /// Every registered source, in the order they were first read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// How a scalar was written; TOML scalars keep their TOML type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarKind {
    /// `"text"` or `'text'` (ecelerity) or a TOML string.
    Quoted,
    /// An unquoted ecelerity word such as `true`, `4`, `eth1` or `192.168.0.1`.
    Bare,
    /// TOML integer.
    Integer,
    /// TOML float.
    Float,
    /// TOML boolean.
    Boolean,
}

/// A single value as written, not yet interpreted.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub kind: ScalarKind,
    pub span: Span,
}

/// Which syntax produced a [`Table`]; the builder uses it for precise errors
/// and to tell TOML's `[a.b.name]` tables from ecelerity's named scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// An ecelerity scope body: `Keyword [name] { ... }`.
    Scope,
    /// An ecelerity dictionary: `key = [ k = v ... ]`.
    Dict,
    /// Any TOML table (standard, inline or implicit).
    Toml,
}

/// An ordered list of entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub kind: TableKind,
    pub entries: Vec<Entry>,
    pub span: Span,
}

/// Any value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    /// `( a b c )` in ecelerity, an array in TOML.
    List(Vec<Value>, Span),
    Table(Table),
}

impl Value {
    pub fn span(&self) -> Span {
        match self {
            Value::Scalar(s) => s.span,
            Value::List(_, span) => *span,
            Value::Table(t) => t.span,
        }
    }

    /// A short word for error messages: "a value", "a list", "a scope", ...
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "a single value",
            Value::List(..) => "a list",
            Value::Table(t) => match t.kind {
                TableKind::Scope => "a scope",
                TableKind::Dict => "a dictionary",
                TableKind::Toml => "a table",
            },
        }
    }
}

/// `key = value`, or a scope `key [name] { ... }` (then `value` is a
/// [`Table`] of kind [`TableKind::Scope`] and `name` is the scope's name).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub name: Option<String>,
    pub value: Value,
    /// Where the key starts.
    pub span: Span,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}
