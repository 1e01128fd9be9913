//! Log destinations: the `cluster://` and `jlog://` strings a logger writes
//! to (`mainlog = "cluster:///var/log/ecelerity/mainlog.cluster=>master"`).
//!
//! The reference (momentum-notes §4.1) says: `cluster://` is an alias for
//! `jlog://`; the path is a journal *directory*, created on demand; `=>name`
//! adds that subscriber when the writer creates the journal, so nothing is
//! lost before the reader first subscribes; `?subscribers=a,b,c` declares
//! several. The grammar accepted here is
//!
//! ```text
//! destination := scheme "://" path [ "=>" name | "?subscribers=" name { "," name } ]
//! scheme      := "cluster" | "jlog"
//! path        := "/" ...            (absolute, no NUL, no ".." component)
//! name        := 1 to 255 bytes, none of them "," "=" ">" "?" "/", space or control
//! ```
//!
//! The notes never show the two subscriber forms together, so a string using
//! both is rejected rather than guessed at; a destination with neither is
//! accepted and creates no subscriber (the journal then keeps nothing for a
//! reader that subscribes later, which is the operator's choice to make).
//! The scheme is kept (rather than folded into one) so the configuration can
//! be shown back as it was written.

use std::fmt;

/// Which spelling of the journal scheme the destination used; they behave the
/// same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cluster,
    Jlog,
}

/// A parsed destination: the journal directory and the subscribers to create
/// with it, in the order written, without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub kind: Kind,
    pub path: String,
    pub subscribers: Vec<String>,
}

/// Why a destination string was refused; the message names the part at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationError(pub String);

impl fmt::Display for DestinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DestinationError {}

// The journal stores a subscriber's checkpoint as `cp.<hex>` and refuses
// names longer than this, so a longer one would only fail later, at the
// first write.
const MAX_SUBSCRIBER: usize = 255;

const QUERY_KEY: &str = "subscribers=";

fn err(input: &str, why: impl fmt::Display) -> DestinationError {
    DestinationError(format!("log destination '{input}': {why}"))
}

impl Destination {
    /// Parses `input`; whitespace around it is not trimmed, because the
    /// configuration parser has already removed the quotes and anything
    /// else would be part of the path.
    pub fn parse(input: &str) -> Result<Destination, DestinationError> {
        let (scheme, rest) = input
            .split_once("://")
            .ok_or_else(|| err(input, "expected 'cluster://' or 'jlog://' before the path"))?;
        let kind = match scheme {
            "cluster" => Kind::Cluster,
            "jlog" => Kind::Jlog,
            "" => return Err(err(input, "missing scheme before '://'")),
            other => {
                return Err(err(
                    input,
                    format!("unknown scheme '{other}' (expected 'cluster' or 'jlog')"),
                ));
            }
        };

        // Names may not contain '>', '=' or '?', so the last "=>" and the
        // last '?' are the separators even if the path itself contains them.
        let (rest, arrow) = match rest.rfind("=>") {
            Some(at) => (&rest[..at], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        let (path, query) = match rest.rfind('?') {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };

        let mut subscribers = Vec::new();
        match (arrow, query) {
            (Some(_), Some(_)) => {
                return Err(err(
                    input,
                    "use either '=>name' or '?subscribers=a,b', not both",
                ));
            }
            (Some(name), None) => subscribers.push(check_name(input, name)?),
            (None, Some(query)) => {
                let list = query.strip_prefix(QUERY_KEY).ok_or_else(|| {
                    err(
                        input,
                        format!("unknown option '?{query}' (only '?subscribers=a,b' is known)"),
                    )
                })?;
                for name in list.split(',') {
                    let name = check_name(input, name)?;
                    if subscribers.contains(&name) {
                        return Err(err(input, format!("subscriber '{name}' is listed twice")));
                    }
                    subscribers.push(name);
                }
            }
            (None, None) => {}
        }

        check_path(input, path)?;
        Ok(Destination {
            kind,
            path: path.to_string(),
            subscribers,
        })
    }
}

fn check_path(input: &str, path: &str) -> Result<(), DestinationError> {
    if path.is_empty() {
        return Err(err(input, "empty path"));
    }
    if !path.starts_with('/') {
        // `cluster://host/x` would read as a host in a URL; there is no host
        // here, and a relative journal would depend on the daemon's cwd.
        return Err(err(
            input,
            format!("path '{path}' must be absolute (write three slashes: 'cluster:///...')"),
        ));
    }
    if path.contains('\0') {
        return Err(err(input, "path contains a NUL byte"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(err(input, format!("path '{path}' has a '..' component")));
    }
    Ok(())
}

fn check_name(input: &str, name: &str) -> Result<String, DestinationError> {
    if name.is_empty() {
        return Err(err(input, "empty subscriber name"));
    }
    if name.len() > MAX_SUBSCRIBER {
        return Err(err(
            input,
            format!(
                "subscriber name is {} bytes, at most {MAX_SUBSCRIBER}",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, ',' | '=' | '>' | '?' | '/') || c.is_whitespace() || c.is_control())
    {
        return Err(err(
            input,
            format!("subscriber name '{}' contains {bad:?}", name.escape_debug()),
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Destination {
        Destination::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &str) -> String {
        match Destination::parse(s) {
            Ok(d) => panic!("{s} parsed as {d:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn every_example_in_the_notes() {
        // momentum-notes §4.1, verbatim.
        for log in ["mainlog", "paniclog", "rejectlog", "acctlog", "bouncelog"] {
            let s = format!("cluster:///var/log/ecelerity/{log}.cluster=>master");
            assert_eq!(
                ok(&s),
                Destination {
                    kind: Kind::Cluster,
                    path: format!("/var/log/ecelerity/{log}.cluster"),
                    subscribers: vec!["master".into()],
                }
            );
        }
    }

    #[test]
    fn jlog_is_the_same_with_another_spelling() {
        let d = ok("jlog:///var/spool/j=>sub");
        assert_eq!(d.kind, Kind::Jlog);
        assert_eq!(d.path, "/var/spool/j");
        assert_eq!(d.subscribers, ["sub"]);
    }

    #[test]
    fn several_subscribers() {
        let d = ok("cluster:///var/log/ecelerity/mainlog.cluster?subscribers=a,b,c");
        assert_eq!(d.path, "/var/log/ecelerity/mainlog.cluster");
        assert_eq!(d.subscribers, ["a", "b", "c"]);
        assert_eq!(ok("jlog:///x?subscribers=one").subscribers, ["one"]);
    }

    #[test]
    fn no_subscriber_at_all() {
        let d = ok("jlog:///var/log/x");
        assert_eq!(d.path, "/var/log/x");
        assert!(d.subscribers.is_empty());
    }

    #[test]
    fn separators_inside_the_path_belong_to_the_path() {
        assert_eq!(ok("jlog:///a=>b/c=>m").path, "/a=>b/c");
        assert_eq!(ok("jlog:///a?b/c?subscribers=m").path, "/a?b/c");
    }

    #[test]
    fn refusals_name_the_fault() {
        assert!(bad("/var/log/x").contains("expected 'cluster://'"));
        assert!(bad("file:///var/log/x").contains("unknown scheme 'file'"));
        assert!(bad("CLUSTER:///x").contains("unknown scheme"));
        assert!(bad(":///x").contains("missing scheme"));
        assert!(bad("cluster://").contains("empty path"));
        assert!(bad("cluster://=>master").contains("empty path"));
        assert!(bad("cluster://var/log/x").contains("must be absolute"));
        assert!(bad("cluster:///var/../etc=>m").contains("'..'"));
        assert!(bad("cluster:///x\0y").contains("NUL"));
        assert!(bad("cluster:///x=>").contains("empty subscriber"));
        assert!(bad("cluster:///x=>a b").contains("contains ' '"));
        assert!(bad("cluster:///x=>a,b").contains("contains ','"));
        assert!(bad("cluster:///x?subscribers=").contains("empty subscriber"));
        assert!(bad("cluster:///x?subscribers=a,,b").contains("empty subscriber"));
        assert!(bad("cluster:///x?subscribers=a,b,a").contains("listed twice"));
        assert!(bad("cluster:///x?subscriber=a").contains("unknown option"));
        assert!(bad("cluster:///x?subscribers=a=>b").contains("not both"));
        assert!(bad(&format!("cluster:///x=>{}", "s".repeat(256))).contains("at most 255"));
        ok(&format!("cluster:///x=>{}", "s".repeat(255)));
    }
}
