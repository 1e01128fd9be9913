//! The effective configuration as text: what `eccluster check-config` prints.
//!
//! The listing is written in ecelerity.conf syntax, so it can be read back as a
//! configuration; values that come from defaults are marked `# default`, and
//! unset options are shown as comments.

use std::fmt::Write as _;

use super::reader::{Effective, quote};

/// Renders a listing, two spaces of indent per scope level.
pub fn render(items: &[Effective]) -> String {
    let mut out = String::new();
    render_into(&mut out, items, 0);
    out
}

fn render_into(out: &mut String, items: &[Effective], depth: usize) {
    let pad = "  ".repeat(depth);
    for item in items {
        match item {
            Effective::Option {
                key,
                value: Some(v),
                default,
            } => {
                let v = v.replace('\n', &format!("\n{pad}"));
                let mark = if *default { "  # default" } else { "" };
                let _ = writeln!(out, "{pad}{key} = {v}{mark}");
            }
            Effective::Option {
                key, value: None, ..
            } => {
                let _ = writeln!(out, "{pad}# {key} is not set");
            }
            Effective::Scope {
                keyword,
                name,
                items,
                default,
            } => {
                let name = name
                    .as_deref()
                    .map(|n| format!(" {}", quote(n)))
                    .unwrap_or_default();
                let mark = if *default { "  # default" } else { "" };
                if items.is_empty() {
                    let _ = writeln!(out, "{pad}{keyword}{name} {{}}{mark}");
                } else {
                    let _ = writeln!(out, "{pad}{keyword}{name} {{{mark}");
                    render_into(out, items, depth + 1);
                    let _ = writeln!(out, "{pad}}}");
                }
            }
        }
    }
}
