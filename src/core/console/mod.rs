//! The console's grammar: tokenizing a command line, finding the command it
//! names, `help`, the `xml` prefix, and suggestions for unknown commands.
//!
//! Commands are registered at run time (later, Lua scripts add their own, as
//! the reference's `msys.registerControl` does), each with the words that name
//! it, a usage string and a one-line help. A handler receives the words after
//! the command's name and the output [`Mode`]; it never sees the `xml`
//! prefix. The registry is generic over the context the handlers need, so it
//! stays free of I/O: the node supplies the context.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::config::error::edit_distance;

pub mod reports;

/// Plain text, or XML (the `xml` prefix of the reference console).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Text,
    Xml,
}

/// Who runs a command. Most commands do not care; some are only safe when
/// every node runs them at once, through a manager (`cluster duravip move`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// This node's own console: the control socket, the CLI or the host's API.
    Local,
    /// A peer over the cluster link, by name: a manager's `broadcast` or
    /// `unicast`.
    Peer(String),
}

/// What a handler does: given the context, the arguments, the mode and the
/// caller, the command's output or an error message.
pub type Handler<C> =
    Arc<dyn Fn(&C, &[String], Mode, &Caller) -> Result<String, String> + Send + Sync>;

/// One command.
pub struct Command<C> {
    /// The words that name it, lowercase: `["cluster", "nodename"]`.
    pub words: Vec<String>,
    /// Argument synopsis for help, e.g. `<node> <command>`.
    pub usage: String,
    pub help: String,
    pub handler: Handler<C>,
}

impl<C> std::fmt::Debug for Command<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("words", &self.words)
            .finish()
    }
}

/// Splits a command line into words: whitespace separates, double or single
/// quotes group (with `\` escaping the next character inside quotes).
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' || c == '\'' {
                let quote = c;
                loop {
                    match chars.next() {
                        Some(q) if q == quote => break,
                        Some('\\') => match chars.next() {
                            Some(e) => word.push(e),
                            None => return Err(format!("unterminated {quote} quote")),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err(format!("unterminated {quote} quote")),
                    }
                }
            } else {
                word.push(c);
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// Escapes text for XML element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A command line ready to run (see [`Console::prepare`]).
pub enum Prepared<C> {
    /// Its answer is known already (`help`).
    Answer(String),
    Run {
        handler: Handler<C>,
        args: Vec<String>,
        mode: Mode,
    },
}

impl<C> Prepared<C> {
    pub fn run(self, ctx: &C, caller: &Caller) -> Result<String, String> {
        match self {
            Prepared::Answer(text) => Ok(text),
            Prepared::Run {
                handler,
                args,
                mode,
            } => handler(ctx, &args, mode, caller),
        }
    }
}

impl<C> std::fmt::Debug for Prepared<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prepared::Answer(_) => f.write_str("Answer"),
            Prepared::Run { args, .. } => f.debug_struct("Run").field("args", args).finish(),
        }
    }
}

/// The command registry.
pub struct Console<C> {
    commands: Vec<Command<C>>,
}

impl<C> std::fmt::Debug for Console<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.commands.iter().map(|c| c.words.join(" ")))
            .finish()
    }
}

impl<C> Default for Console<C> {
    fn default() -> Self {
        Console {
            commands: Vec::new(),
        }
    }
}

impl<C> Console<C> {
    /// Adds a command; an existing command with the same words is replaced
    /// (so a reloaded script can redefine its commands).
    pub fn register(
        &mut self,
        words: &str,
        usage: &str,
        help: &str,
        handler: impl Fn(&C, &[String], Mode, &Caller) -> Result<String, String> + Send + Sync + 'static,
    ) -> Result<(), String> {
        let words: Vec<String> = tokenize(words)?
            .into_iter()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        if words.is_empty() {
            return Err("a command needs at least one word".into());
        }
        if matches!(words[0].as_str(), "help" | "xml") {
            return Err(format!("'{}' is reserved by the console", words[0]));
        }
        self.commands.retain(|c| c.words != words);
        self.commands.push(Command {
            words,
            usage: usage.to_string(),
            help: help.to_string(),
            handler: Arc::new(handler),
        });
        self.commands.sort_by(|a, b| a.words.cmp(&b.words));
        Ok(())
    }

    /// Runs one command line for `caller`.
    pub fn exec(&self, ctx: &C, line: &str, caller: &Caller) -> Result<String, String> {
        self.prepare(line)?.run(ctx, caller)
    }

    /// Finds what a command line runs, to run it later: a caller holding
    /// the registry behind a lock can let go of it first, so that a
    /// command may register commands (a policy script loading).
    pub fn prepare(&self, line: &str) -> Result<Prepared<C>, String> {
        let mut words = tokenize(line)?;
        let mut mode = Mode::Text;
        if words.first().is_some_and(|w| w.eq_ignore_ascii_case("xml")) {
            words.remove(0);
            mode = Mode::Xml;
        }
        let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
        match lower.first().map(String::as_str) {
            None => Err("empty command; try 'help'".into()),
            Some("help") => self.help(&lower[1..], mode).map(Prepared::Answer),
            _ if lower.last().is_some_and(|w| w == "help")
                && self.has_group(&lower[..lower.len() - 1]) =>
            {
                self.help(&lower[..lower.len() - 1], mode)
                    .map(Prepared::Answer)
            }
            _ => {
                let cmd = self.find(&lower).ok_or_else(|| self.unknown(&words))?;
                Ok(Prepared::Run {
                    handler: Arc::clone(&cmd.handler),
                    args: words.split_off(cmd.words.len()),
                    mode,
                })
            }
        }
    }

    /// Removes the command named by `words`; whether there was one.
    pub fn unregister(&mut self, words: &str) -> bool {
        let Ok(words) = tokenize(words) else {
            return false;
        };
        let words: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
        let before = self.commands.len();
        self.commands.retain(|c| c.words != words);
        self.commands.len() != before
    }

    /// The names of the registered commands (`cluster nodename`).
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.commands.iter().map(|c| c.words.join(" "))
    }

    /// The longest registered command whose words start `words`.
    fn find(&self, words: &[String]) -> Option<&Command<C>> {
        self.commands
            .iter()
            .filter(|c| words.starts_with(&c.words))
            .max_by_key(|c| c.words.len())
    }

    fn has_group(&self, prefix: &[String]) -> bool {
        !prefix.is_empty() && self.commands.iter().any(|c| c.words.starts_with(prefix))
    }

    /// `help`, `help cluster`, `cluster help`, `help cluster info`.
    fn help(&self, prefix: &[String], mode: Mode) -> Result<String, String> {
        let matching: Vec<&Command<C>> = self
            .commands
            .iter()
            .filter(|c| c.words.starts_with(prefix) || prefix.starts_with(&c.words))
            .collect();
        if matching.is_empty() {
            return Err(self.unknown(prefix));
        }
        let mut out = String::new();
        match mode {
            Mode::Text => {
                let width = matching
                    .iter()
                    .map(|c| synopsis(c).len())
                    .max()
                    .unwrap_or(0);
                for c in &matching {
                    let _ = writeln!(out, "{:width$}  {}", synopsis(c), c.help);
                }
            }
            Mode::Xml => {
                out.push_str("<help>\n");
                for c in &matching {
                    let _ = writeln!(
                        out,
                        "  <command name=\"{}\" usage=\"{}\">{}</command>",
                        xml_escape(&c.words.join(" ")),
                        xml_escape(&c.usage),
                        xml_escape(&c.help)
                    );
                }
                out.push_str("</help>\n");
            }
        }
        Ok(out)
    }

    /// The error for an unknown command, naming the closest commands.
    fn unknown(&self, words: &[String]) -> String {
        let typed = words.join(" ");
        let lower = typed.to_ascii_lowercase();
        let mut scored: Vec<(usize, String)> = self
            .commands
            .iter()
            .map(|c| {
                let name = c.words.join(" ");
                let n = c.words.len().min(words.len());
                let head = words[..n].join(" ").to_ascii_lowercase();
                (
                    edit_distance(&head, &name).min(edit_distance(&lower, &name)),
                    name,
                )
            })
            .filter(|(d, name)| *d <= (name.len() / 3).max(2))
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        let close: Vec<String> = scored.into_iter().take(3).map(|(_, n)| n).collect();
        if close.is_empty() {
            format!("unknown command '{typed}'; 'help' lists the commands")
        } else {
            format!(
                "unknown command '{typed}'; did you mean: {}?",
                close.join(", ")
            )
        }
    }
}

fn synopsis<C>(c: &Command<C>) -> String {
    if c.usage.is_empty() {
        c.words.join(" ")
    } else {
        format!("{} {}", c.words.join(" "), c.usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console() -> Console<u32> {
        let mut c = Console::default();
        c.register(
            "cluster nodename",
            "",
            "Show the name of the local node.",
            |n: &u32, _, _, _| Ok(format!("node{n}\n")),
        )
        .unwrap();
        c.register("cluster info", "", "Show status.", |_, _, mode, _| {
            Ok(if mode == Mode::Xml {
                "<info/>\n".into()
            } else {
                "info\n".into()
            })
        })
        .unwrap();
        c.register("echo", "<words>", "Echo.", |_, args, _, _| {
            Ok(args.join("|"))
        })
        .unwrap();
        c
    }

    #[test]
    fn tokenizer_groups_quotes_and_escapes() {
        assert_eq!(
            tokenize(r#"a "b c" 'd"e' "f\"g""#).unwrap(),
            ["a", "b c", "d\"e", "f\"g"]
        );
        assert_eq!(tokenize("  ").unwrap(), Vec::<String>::new());
        assert!(tokenize("a \"b").is_err());
    }

    #[test]
    fn dispatch_passes_arguments_and_mode() {
        let c = console();
        assert_eq!(
            c.exec(&7, "cluster nodename", &Caller::Local).unwrap(),
            "node7\n"
        );
        assert_eq!(
            c.exec(&7, "CLUSTER NodeName", &Caller::Local).unwrap(),
            "node7\n"
        );
        assert_eq!(
            c.exec(&7, "xml cluster info", &Caller::Local).unwrap(),
            "<info/>\n"
        );
        assert_eq!(c.exec(&7, "echo A 'b c'", &Caller::Local).unwrap(), "A|b c");
    }

    #[test]
    fn help_lists_commands_in_a_group() {
        let c = console();
        let all = c.exec(&0, "help", &Caller::Local).unwrap();
        assert!(
            all.contains("cluster nodename") && all.contains("echo <words>"),
            "{all}"
        );
        let cluster = c.exec(&0, "cluster help", &Caller::Local).unwrap();
        assert!(
            cluster.contains("cluster info") && !cluster.contains("echo"),
            "{cluster}"
        );
        assert!(
            c.exec(&0, "xml help", &Caller::Local)
                .unwrap()
                .starts_with("<help>")
        );
    }

    #[test]
    fn unknown_commands_suggest_close_ones() {
        let c = console();
        let e = c.exec(&0, "cluster nodenmae", &Caller::Local).unwrap_err();
        assert!(e.contains("did you mean: cluster nodename"), "{e}");
        let e = c.exec(&0, "frobnicate", &Caller::Local).unwrap_err();
        assert!(
            e.contains("unknown command 'frobnicate'") && !e.contains("did you mean"),
            "{e}"
        );
        assert!(c.exec(&0, "", &Caller::Local).is_err());
    }

    #[test]
    fn commands_can_be_unregistered() {
        let mut c = console();
        assert!(c.unregister("ECHO"));
        assert!(!c.unregister("echo"));
        assert!(c.exec(&0, "echo a", &Caller::Local).is_err());
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            ["cluster info", "cluster nodename"]
        );
    }

    #[test]
    fn reserved_words_cannot_be_registered() {
        let mut c = console();
        assert!(
            c.register("help me", "", "", |_, _, _, _| Ok(String::new()))
                .is_err()
        );
        assert!(
            c.register("", "", "", |_, _, _, _| Ok(String::new()))
                .is_err()
        );
    }

    #[test]
    fn xml_escape_escapes_markup() {
        assert_eq!(
            xml_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
