//! Typed configuration, its defaults, the TOML and ecelerity.conf readers, and validation.
//!
//! Reading is two steps. A reader ([`ecelerity`] or [`toml_reader`]) turns text
//! into the format-neutral [`tree`]; [`schema::build`] turns the tree into the
//! typed [`model::Config`], checking every option. [`LoadedConfig`] keeps the
//! tree as well, so that one option can be overridden later (the C API's
//! `ecc_config_set`) and checked by exactly the same rules.

pub mod ecelerity;
pub mod error;
pub mod listing;
pub mod model;
pub mod reader;
pub mod schema;
pub mod toml_reader;
pub mod tree;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors};
pub use model::Config;

use reader::{Ctx, Effective};
use tree::{Entry, SourceMap, Table, TableKind, Value};

/// The two configuration syntaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The native format.
    Toml,
    /// Momentum's ecelerity.conf syntax.
    Ecelerity,
}

impl Format {
    /// Guesses the format of a file: by extension, else by content (a line
    /// that is only a `[table]` header means TOML).
    pub fn detect(path: &Path, text: &str) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => return Format::Toml,
            Some("conf") => return Format::Ecelerity,
            _ => {}
        }
        let is_toml_header = |line: &str| {
            let line = line.split('#').next().unwrap_or("").trim();
            line.starts_with('[') && line.ends_with(']') && !line.contains('=')
        };
        if text.lines().any(is_toml_header) {
            Format::Toml
        } else {
            Format::Ecelerity
        }
    }
}

/// Scope keywords whose instances carry a name (`Binding "foo" { }`); used
/// to walk an override path such as `cluster Replicate inbound_cidr max_delay`.
const NAMED_SCOPES: [&str; 9] = [
    "Replicate",
    "Topology",
    "Binding",
    "Binding_Group",
    "Listen",
    "Manager",
    "Node",
    "scriptlet",
    "script",
];

/// A configuration together with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub config: Config,
    /// What `check-config` prints: every option, defaults marked.
    pub effective: Vec<Effective>,
    /// Options present in host-owned scopes that eccluster does not use.
    pub ignored: Vec<String>,
    pub format: Format,
    tree: Table,
    sources: SourceMap,
}

impl LoadedConfig {
    /// Reads a file in either format (and, for ecelerity.conf, what it includes).
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::at(
                path.display().to_string(),
                0,
                0,
                format!("cannot read: {e}"),
            )
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let format = Format::detect(path, &text);
        let mut sources = SourceMap::default();
        let tree = match format {
            Format::Ecelerity => ecelerity::parse_file(path, &mut sources)?,
            Format::Toml => {
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    ConfigError::at(path.display().to_string(), 0, 0, "file is not valid UTF-8")
                })?;
                toml_reader::parse_str(text, path, &mut sources)?
            }
        };
        Self::build(tree, sources, format)
    }

    /// Parses text; relative includes resolve against the current directory.
    pub fn parse(text: &str, format: Format) -> Result<LoadedConfig, ConfigErrors> {
        let mut sources = SourceMap::default();
        let origin = Path::new("<string>");
        let tree = match format {
            Format::Ecelerity => ecelerity::parse_str(text, origin, None, &mut sources)?,
            Format::Toml => toml_reader::parse_str(text, origin, &mut sources)?,
        };
        Self::build(tree, sources, format)
    }

    fn build(
        tree: Table,
        sources: SourceMap,
        format: Format,
    ) -> Result<LoadedConfig, ConfigErrors> {
        let mut ctx = Ctx::new(&sources);
        let (config, effective) = schema::build(&tree, &mut ctx);
        let Ctx {
            mut errors,
            ignored,
            ..
        } = ctx;
        // Files in the order they were read, then top to bottom.
        errors.sort_by_key(|e| {
            (
                sources
                    .files()
                    .iter()
                    .position(|f| f.display().to_string() == e.file),
                e.line,
                e.col,
            )
        });
        match config {
            Some(config) if errors.is_empty() => Ok(LoadedConfig {
                config,
                effective,
                ignored,
                format,
                tree,
                sources,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// The files this configuration was read from.
    pub fn files(&self) -> &[PathBuf] {
        self.sources.files()
    }

    /// The effective configuration in ecelerity.conf syntax, defaults marked.
    pub fn listing(&self) -> String {
        listing::render(&self.effective)
    }

    /// Sets one option, given as a scope path and option name separated by
    /// spaces (`cluster heartbeats_per_sec`, `cluster Replicate cache1
    /// max_size`, `Control_Listener Listen /tmp/x mode`) and a value in
    /// ecelerity.conf syntax (`4`, `"eth1"`, `( a b )`, `[ k = v ]`). The
    /// whole configuration is checked again; on error nothing changes.
    pub fn set(&mut self, option_path: &str, value: &str) -> Result<(), ConfigErrors> {
        let words: Vec<String> = crate::core::console::tokenize(option_path)
            .map_err(|e| ConfigError::at("<override>", 0, 0, e).with_option(option_path))?;
        let Some((option, scopes)) = words.split_last() else {
            return Err(ConfigError::at("<override>", 0, 0, "empty option path").into());
        };
        let mut sources = self.sources.clone();
        let origin = PathBuf::from(format!("<override {option_path}>"));
        let parsed =
            ecelerity::parse_str(&format!("value = {value}"), &origin, None, &mut sources)?;
        let Some(Entry { value, span, .. }) = parsed.entries.into_iter().next() else {
            return Err(
                ConfigError::at(origin.display().to_string(), 1, 1, "no value given").into(),
            );
        };
        let mut tree = self.tree.clone();
        let target = walk(&mut tree, scopes)
            .map_err(|e| ConfigError::at("<override>", 0, 0, e).with_option(option_path))?;
        target
            .entries
            .retain(|e| !(e.key.eq_ignore_ascii_case(option) && e.name.is_none()));
        target.entries.push(Entry {
            key: option.clone(),
            name: None,
            value,
            span,
        });
        let rebuilt = Self::build(tree, sources, self.format)?;
        *self = rebuilt;
        Ok(())
    }
}

/// Finds (or creates) the table a scope path names.
fn walk<'t>(mut table: &'t mut Table, path: &[String]) -> Result<&'t mut Table, String> {
    let mut i = 0;
    while i < path.len() {
        let keyword = &path[i];
        let named = NAMED_SCOPES.iter().any(|k| k.eq_ignore_ascii_case(keyword));
        let name = if named {
            i += 1;
            Some(
                path.get(i)
                    .ok_or_else(|| format!("{keyword} needs a name in the option path"))?
                    .clone(),
            )
        } else {
            None
        };
        i += 1;
        table = descend(table, keyword, name)?;
    }
    Ok(table)
}

fn descend<'t>(
    table: &'t mut Table,
    keyword: &str,
    name: Option<String>,
) -> Result<&'t mut Table, String> {
    let toml = table.kind == TableKind::Toml;
    let matches = |e: &Entry| {
        e.key.eq_ignore_ascii_case(keyword)
            && (toml || e.name == name)
            && matches!(e.value, Value::Table(_))
    };
    let index = match table.entries.iter().position(matches) {
        Some(i) => i,
        None => {
            let kind = if toml {
                TableKind::Toml
            } else {
                TableKind::Scope
            };
            table.entries.push(Entry {
                key: keyword.to_string(),
                name: if toml { None } else { name.clone() },
                value: Value::Table(Table {
                    kind,
                    entries: Vec::new(),
                    span: table.span,
                }),
                span: table.span,
            });
            table.entries.len() - 1
        }
    };
    let Value::Table(inner) = &mut table.entries[index].value else {
        return Err(format!("{keyword} is not a scope"));
    };
    match (toml, name) {
        (true, Some(name)) => descend(inner, &name, None),
        _ => Ok(inner),
    }
}
