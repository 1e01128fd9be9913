//! Reader for Momentum's `ecelerity.conf` syntax.
//!
//! Sites moving to eccluster already have a working `ecelerity.conf`; making
//! them rewrite it by hand invites mistakes, so we read their file as it is.
//! This module only knows the *shape* of the syntax (options, scopes, lists,
//! dictionaries, includes) and produces the format-neutral tree of
//! [`crate::config::tree`]; what any option means is the builder's business.
//! Keeping the reader ignorant of option names means an unknown option is
//! reported by the same code, with the same wording and suggestions, as in the
//! TOML reader.
//!
//! The lexer and parser are hand-written rather than generated because the
//! file is operator input: every error has to say where it is and what was
//! expected, and no input — however broken — may crash the process. To that
//! end nesting is bounded (brackets at [`MAX_NESTING`], includes at
//! [`MAX_INCLUDE_DEPTH`]), so recursion can never exhaust the stack, and text
//! is only ever handled a whole `char` at a time.
//!
//! Grammar decisions where the reference documentation is silent or loose:
//!
//! * Whitespace, newlines included, never matters; `a = 1 b = 2` on one line
//!   is two assignments.
//! * A bare word runs until whitespace or one of `# " ' = { } [ ] ( ) ,`.
//!   `/*` opens a comment only where a token could start, so `a/*b` is one
//!   word; `/` is otherwise an ordinary word character so unquoted paths work.
//! * Option and scope keywords must be bare words; scope names, dictionary
//!   keys and values may be quoted or bare.
//! * Commas in lists and dictionaries are pure separators and may appear
//!   anywhere between items, any number of times.
//! * `include X` / `readonly_include X` (keyword in any case, `X` quoted or
//!   bare) is a directive unless the token after `X` is `{` — then it is a
//!   scope named `X` — and `include = X` is an ordinary option. `include X =`
//!   is an error rather than a guess. `readonly_include` behaves exactly like
//!   `include`: the distinction only matters to Momentum's console, which
//!   can rewrite configuration files and we never do.
//! * An included file must be complete in itself (balanced brackets); its
//!   entries are spliced into the table holding the directive and keep their
//!   own file and positions, so errors point into the included file.

use std::fs;
use std::iter;
use std::path::{Path, PathBuf};
use std::str::Chars;

use crate::config::error::ConfigError;
use crate::config::tree::{
    Entry, FileId, Scalar, ScalarKind, SourceMap, Span, Table, TableKind, Value,
};

/// How many `{`, `(` and `[` may be open at once, counted across included
/// files, so that recursion depth stays far below any thread's stack size.
pub(crate) const MAX_NESTING: usize = 64;

/// How deeply includes may nest; real configurations use two or three levels,
/// anything deeper is almost certainly a mistake.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 32;

/// Reads a file (and everything it includes). The returned table has kind
/// [`TableKind::Scope`] and holds the file's top-level entries.
pub fn parse_file(path: &Path, sources: &mut SourceMap) -> Result<Table, ConfigError> {
    let display = path.display().to_string();
    let text = read_source(path).map_err(|e| match e {
        ReadError::Io(e) => {
            ConfigError::at(display.clone(), 0, 0, format!("cannot read file: {e}"))
        }
        ReadError::Utf8 { line, col } => {
            ConfigError::at(display.clone(), line, col, "file is not valid UTF-8")
        }
    })?;
    let file = sources.add(path);
    let mut ctx = Ctx {
        sources,
        stack: vec![Frame {
            canon: canonical(path),
            display,
        }],
    };
    let entries = parse_text(&text, file, parent_dir(path), &mut ctx, 0, 0)?;
    Ok(root_table(file, entries))
}

/// Parses text. `origin` is registered in `sources` as the display name (e.g.
/// `<string>`). Relative includes are resolved against `base_dir` (if `None`,
/// against the current directory).
pub fn parse_str(
    text: &str,
    origin: &Path,
    base_dir: Option<&Path>,
    sources: &mut SourceMap,
) -> Result<Table, ConfigError> {
    let file = sources.add(origin);
    // An empty base makes `join` return the include path unchanged, which the
    // OS then resolves against the current directory.
    let base = base_dir.map(Path::to_path_buf).unwrap_or_default();
    // The origin is not a file on disk, so it cannot take part in a cycle and
    // has no frame on the include stack.
    let mut ctx = Ctx {
        sources,
        stack: Vec::new(),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let entries = parse_text(text, file, base, &mut ctx, 0, 0)?;
    Ok(root_table(file, entries))
}

fn root_table(file: FileId, entries: Vec<Entry>) -> Table {
    Table {
        kind: TableKind::Scope,
        entries,
        span: Span {
            file,
            line: 1,
            col: 1,
        },
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Identity of a file for cycle detection: two spellings of one file (`a.conf`
/// and `./dir/../a.conf`) must be recognised as the same file.
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

enum ReadError {
    Io(std::io::Error),
    Utf8 { line: u32, col: u32 },
}

/// Reads a whole file as UTF-8, reporting where the first invalid byte is so
/// the operator can find a stray Latin-1 character.
fn read_source(path: &Path) -> Result<String, ReadError> {
    let bytes = fs::read(path).map_err(ReadError::Io)?;
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            if text.starts_with('\u{feff}') {
                text.remove(0);
            }
            Ok(text)
        }
        Err(e) => {
            let valid = e
                .as_bytes()
                .get(..e.utf8_error().valid_up_to())
                .unwrap_or_default();
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let (mut line, mut col) = (1u32, 1u32);
            for c in prefix.chars() {
                if c == '\n' {
                    line = line.saturating_add(1);
                    col = 1;
                } else {
                    col = col.saturating_add(1);
                }
            }
            Err(ReadError::Utf8 { line, col })
        }
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Eq,
    Comma,
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Tok,
    line: u32,
    col: u32,
}

/// A lexical error; the parser adds the file name.
struct LexError {
    line: u32,
    col: u32,
    message: String,
}

/// Longest token text quoted back in an error message; a runaway bare word
/// (say, a whole line of base64) would otherwise drown the message.
const QUOTE_LIMIT: usize = 40;

fn describe(tok: &Tok) -> String {
    fn clip(s: &str) -> String {
        if s.chars().count() > QUOTE_LIMIT {
            let mut t: String = s.chars().take(QUOTE_LIMIT).collect();
            t.push_str("...");
            t
        } else {
            s.to_string()
        }
    }
    match tok {
        Tok::Word(w) => format!("'{}'", clip(w)),
        Tok::Str(s) => format!("\"{}\"", clip(s)),
        Tok::LBrace => "'{'".into(),
        Tok::RBrace => "'}'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Eq => "'='".into(),
        Tok::Comma => "','".into(),
        Tok::Eof => "end of file".into(),
    }
}

fn ends_word(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '#' | '"' | '\'' | '=' | '{' | '}' | '[' | ']' | '(' | ')' | ','
        )
}

/// Produces tokens on demand, so that a lexical error late in a file never
/// hides an earlier syntax error.
struct Lexer<'s> {
    chars: Chars<'s>,
    line: u32,
    col: u32,
}

impl<'s> Lexer<'s> {
    fn new(text: &'s str) -> Self {
        Lexer {
            chars: text.chars(),
            line: 1,
            col: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.clone().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.chars.clone();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    fn skip_trivia(&mut self) -> Result<(), LexError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('/') if self.peek2() == Some('*') => {
                    let (line, col) = (self.line, self.col);
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(LexError {
                                    line,
                                    col,
                                    message: format!(
                                        "unterminated comment: the '/*' at line {line}, column {col} has no closing '*/'"
                                    ),
                                });
                            }
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, LexError> {
        self.skip_trivia()?;
        let (line, col) = (self.line, self.col);
        let Some(c) = self.peek() else {
            return Ok(Token {
                kind: Tok::Eof,
                line,
                col,
            });
        };
        let single = match c {
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '=' => Some(Tok::Eq),
            ',' => Some(Tok::Comma),
            _ => None,
        };
        let kind = if let Some(kind) = single {
            self.bump();
            kind
        } else if c == '"' || c == '\'' {
            self.bump();
            Tok::Str(self.quoted(c, line, col)?)
        } else {
            let mut word = String::new();
            while let Some(c) = self.peek() {
                if ends_word(c) {
                    break;
                }
                word.push(c);
                self.bump();
            }
            Tok::Word(word)
        };
        Ok(Token { kind, line, col })
    }

    /// The body of a quoted string whose opening `quote` has been consumed.
    /// Unknown escapes are kept verbatim because Windows-style paths and regular
    /// expressions in real configurations rely on that.
    fn quoted(&mut self, quote: char, line: u32, col: u32) -> Result<String, LexError> {
        let unterminated = |before: &str| LexError {
            line,
            col,
            message: format!("unterminated string: no closing {quote} before {before}"),
        };
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated("end of file")),
                Some('\n' | '\r') => return Err(unterminated("end of line")),
                Some(c) if c == quote => return Ok(text),
                Some('\\') => match self.peek() {
                    Some(e @ ('"' | '\'' | '\\')) => {
                        self.bump();
                        text.push(e);
                    }
                    Some('n') => {
                        self.bump();
                        text.push('\n');
                    }
                    Some('t') => {
                        self.bump();
                        text.push('\t');
                    }
                    // A newline or end of file is left for the loop to report.
                    Some('\n' | '\r') | None => text.push('\\'),
                    Some(other) => {
                        self.bump();
                        text.push('\\');
                        text.push(other);
                    }
                },
                Some(c) => text.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// One file on the current include chain.
struct Frame {
    canon: PathBuf,
    display: String,
}

/// State shared by a file and everything it includes.
struct Ctx<'m> {
    sources: &'m mut SourceMap,
    stack: Vec<Frame>,
}

fn parse_text(
    text: &str,
    file: FileId,
    base_dir: PathBuf,
    ctx: &mut Ctx<'_>,
    depth: usize,
    include_depth: usize,
) -> Result<Vec<Entry>, ConfigError> {
    let display = ctx.sources.path(file).display().to_string();
    let mut parser = Parser {
        lex: Lexer::new(text),
        peeked: None,
        file,
        display,
        base_dir,
        ctx,
        depth,
        include_depth,
    };
    parser.items(None)
}

struct Parser<'s, 'c, 'm> {
    lex: Lexer<'s>,
    peeked: Option<Token>,
    file: FileId,
    display: String,
    base_dir: PathBuf,
    ctx: &'c mut Ctx<'m>,
    /// Open brackets, including those of the files that included this one.
    depth: usize,
    include_depth: usize,
}

impl Parser<'_, '_, '_> {
    fn err(&self, tok: &Token, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.display.clone(), tok.line, tok.col, message)
    }

    fn span(&self, tok: &Token) -> Span {
        Span {
            file: self.file,
            line: tok.line,
            col: tok.col,
        }
    }

    fn lex(&mut self) -> Result<Token, ConfigError> {
        self.lex
            .next_token()
            .map_err(|e| ConfigError::at(self.display.clone(), e.line, e.col, e.message))
    }

    fn next(&mut self) -> Result<Token, ConfigError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn peek(&mut self) -> Result<&Token, ConfigError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        // Just filled above; the fallback only exists to avoid an unwrap.
        Ok(self.peeked.get_or_insert(Token {
            kind: Tok::Eof,
            line: 0,
            col: 0,
        }))
    }

    /// Guards every construct that recurses, so nesting depth and therefore
    /// stack use stay bounded whatever the input.
    fn enter(&mut self, open: &Token) -> Result<(), ConfigError> {
        if self.depth >= MAX_NESTING {
            return Err(self.err(
                open,
                format!("nesting too deep: more than {MAX_NESTING} levels of '{{', '(' and '['"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// A sequence of items up to end of file (`open` is `None`) or up to the
    /// `}` matching `open`.
    fn items(&mut self, open: Option<&Token>) -> Result<Vec<Entry>, ConfigError> {
        let mut entries = Vec::new();
        loop {
            let tok = self.next()?;
            match tok.kind {
                Tok::Eof => {
                    return match open {
                        None => Ok(entries),
                        Some(o) => Err(self.err(
                            &tok,
                            format!(
                                "unclosed '{{' opened at line {}, column {}: expected '}}' before end of file",
                                o.line, o.col
                            ),
                        )),
                    };
                }
                Tok::RBrace => {
                    return match open {
                        Some(_) => Ok(entries),
                        None => {
                            Err(self.err(&tok, "unexpected '}': there is no open scope to close"))
                        }
                    };
                }
                Tok::Word(ref key) => {
                    let key = key.clone();
                    self.item(key, &tok, &mut entries)?;
                }
                Tok::Str(_) => {
                    return Err(self.err(
                        &tok,
                        format!(
                            "expected an option or scope keyword, found the quoted string {}; keywords are not quoted",
                            describe(&tok.kind)
                        ),
                    ));
                }
                _ => {
                    return Err(self.err(
                        &tok,
                        format!(
                            "unexpected {}: expected an option or scope keyword",
                            describe(&tok.kind)
                        ),
                    ));
                }
            }
        }
    }

    /// Everything after a keyword: an assignment, a scope or an include.
    fn item(
        &mut self,
        key: String,
        key_tok: &Token,
        entries: &mut Vec<Entry>,
    ) -> Result<(), ConfigError> {
        let span = self.span(key_tok);
        let tok = self.next()?;
        match tok.kind {
            Tok::Eq => {
                let value = self.value("after '='")?;
                entries.push(Entry {
                    key,
                    name: None,
                    value,
                    span,
                });
            }
            Tok::LBrace => {
                let table = self.scope_body(&tok)?;
                entries.push(Entry {
                    key,
                    name: None,
                    value: Value::Table(table),
                    span,
                });
            }
            Tok::Word(ref name) | Tok::Str(ref name) => {
                let name = name.clone();
                let is_include = key.eq_ignore_ascii_case("include")
                    || key.eq_ignore_ascii_case("readonly_include");
                let after = self.peek()?;
                match after.kind {
                    Tok::LBrace => {
                        let open = self.next()?;
                        let table = self.scope_body(&open)?;
                        entries.push(Entry {
                            key,
                            name: Some(name),
                            value: Value::Table(table),
                            span,
                        });
                    }
                    Tok::Eq if is_include => {
                        let after = after.clone();
                        return Err(self.err(
                            &after,
                            format!(
                                "unexpected '=' after '{key} {}': write '{key} = ...' for an option or '{key} PATH' to include a file",
                                describe(&tok.kind)
                            ),
                        ));
                    }
                    _ if is_include => {
                        let included = self.include(&name, key_tok)?;
                        entries.extend(included);
                    }
                    _ => {
                        let after = after.clone();
                        // The usual cause is an option whose '=' was forgotten.
                        let hint = if after.kind == Tok::Eq {
                            String::new()
                        } else {
                            format!(
                                " (or, if '{key}' is an option, '=' is missing before the value)"
                            )
                        };
                        return Err(self.err(
                            &after,
                            format!(
                                "a scope name must be followed by '{{', found {} after {key} {}{hint}",
                                describe(&after.kind),
                                describe(&tok.kind)
                            ),
                        ));
                    }
                }
            }
            _ => {
                return Err(self.err(
                    &tok,
                    format!(
                        "expected '=' or '{{' after '{key}', found {}",
                        describe(&tok.kind)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn scope_body(&mut self, open: &Token) -> Result<Table, ConfigError> {
        self.enter(open)?;
        let entries = self.items(Some(open))?;
        self.leave();
        Ok(Table {
            kind: TableKind::Scope,
            entries,
            span: self.span(open),
        })
    }

    /// A value where one is required; `context` completes "expected a value ...".
    fn value(&mut self, context: &str) -> Result<Value, ConfigError> {
        let tok = self.next()?;
        match tok.kind {
            Tok::Word(_) | Tok::Str(_) | Tok::LParen | Tok::LBracket => self.value_from(tok),
            _ => Err(self.err(
                &tok,
                format!("expected a value {context}, found {}", describe(&tok.kind)),
            )),
        }
    }

    /// Finishes a value whose first token (a word, string, `(` or `[`) has
    /// already been read.
    fn value_from(&mut self, tok: Token) -> Result<Value, ConfigError> {
        let span = self.span(&tok);
        match tok.kind {
            Tok::Word(text) => Ok(Value::Scalar(Scalar {
                text,
                kind: ScalarKind::Bare,
                span,
            })),
            Tok::Str(text) => Ok(Value::Scalar(Scalar {
                text,
                kind: ScalarKind::Quoted,
                span,
            })),
            Tok::LParen => self.list(&tok),
            Tok::LBracket => self.dict(&tok),
            _ => Err(self.err(
                &tok,
                format!("expected a value, found {}", describe(&tok.kind)),
            )),
        }
    }

    fn list(&mut self, open: &Token) -> Result<Value, ConfigError> {
        self.enter(open)?;
        let mut items = Vec::new();
        loop {
            let tok = self.next()?;
            match tok.kind {
                Tok::RParen => break,
                Tok::Comma => {}
                Tok::Word(_) | Tok::Str(_) | Tok::LParen | Tok::LBracket => {
                    items.push(self.value_from(tok)?)
                }
                Tok::Eof => {
                    return Err(self.err(
                        &tok,
                        format!(
                            "unclosed '(' opened at line {}, column {}: expected ')' before end of file",
                            open.line, open.col
                        ),
                    ));
                }
                _ => {
                    return Err(self.err(
                        &tok,
                        format!(
                            "unexpected {} in the list opened at line {}: expected a list item or ')'",
                            describe(&tok.kind),
                            open.line
                        ),
                    ));
                }
            }
        }
        self.leave();
        Ok(Value::List(items, self.span(open)))
    }

    fn dict(&mut self, open: &Token) -> Result<Value, ConfigError> {
        self.enter(open)?;
        let mut entries = Vec::new();
        loop {
            let tok = self.next()?;
            match tok.kind {
                Tok::RBracket => break,
                Tok::Comma => {}
                Tok::Word(ref key) | Tok::Str(ref key) => {
                    let key = key.clone();
                    let eq = self.next()?;
                    if eq.kind != Tok::Eq {
                        return Err(self.err(
                            &eq,
                            format!(
                                "expected '=' after dictionary key {}, found {}",
                                describe(&tok.kind),
                                describe(&eq.kind)
                            ),
                        ));
                    }
                    let value = self.value("after '='")?;
                    entries.push(Entry {
                        key,
                        name: None,
                        value,
                        span: self.span(&tok),
                    });
                }
                Tok::Eof => {
                    return Err(self.err(
                        &tok,
                        format!(
                            "unclosed '[' opened at line {}, column {}: expected ']' before end of file",
                            open.line, open.col
                        ),
                    ));
                }
                _ => {
                    return Err(self.err(
                        &tok,
                        format!(
                            "unexpected {} in the dictionary opened at line {}: expected a key or ']'",
                            describe(&tok.kind),
                            open.line
                        ),
                    ));
                }
            }
        }
        self.leave();
        Ok(Value::Table(Table {
            kind: TableKind::Dict,
            entries,
            span: self.span(open),
        }))
    }

    /// Resolves an include target and returns the entries of every file it
    /// names, in order. Errors about the target are reported at `at`, the
    /// directive's keyword.
    fn include(&mut self, target: &str, at: &Token) -> Result<Vec<Entry>, ConfigError> {
        let path = self.base_dir.join(target);
        let meta = fs::metadata(&path)
            .map_err(|e| self.err(at, format!("cannot include '{}': {e}", path.display())))?;
        if !meta.is_dir() {
            return self.include_file(path, at);
        }
        let listing = fs::read_dir(&path).map_err(|e| {
            self.err(
                at,
                format!("cannot include directory '{}': {e}", path.display()),
            )
        })?;
        let mut files = Vec::new();
        for dirent in listing {
            let dirent = dirent.map_err(|e| {
                self.err(
                    at,
                    format!("cannot include directory '{}': {e}", path.display()),
                )
            })?;
            let name = dirent.file_name();
            // Editors and package managers leave dotfiles (swap files,
            // `.dpkg-old`) next to real configuration; reading them would
            // apply settings nobody meant to.
            if name.as_encoded_bytes().first() == Some(&b'.') {
                continue;
            }
            let file = dirent.path();
            if fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                files.push((name, file));
            }
        }
        // Byte-wise order is what `ls` shows under the C locale, so operators
        // can number files (`10-base.conf`, `20-site.conf`) to order them.
        files.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
        let mut entries = Vec::new();
        for (_, file) in files {
            entries.extend(self.include_file(file, at)?);
        }
        Ok(entries)
    }

    fn include_file(&mut self, path: PathBuf, at: &Token) -> Result<Vec<Entry>, ConfigError> {
        let canon = canonical(&path);
        let display = path.display().to_string();
        if let Some(i) = self.ctx.stack.iter().position(|f| f.canon == canon) {
            let chain: Vec<&str> = self
                .ctx
                .stack
                .get(i..)
                .unwrap_or_default()
                .iter()
                .map(|f| f.display.as_str())
                .chain(iter::once(display.as_str()))
                .collect();
            return Err(self.err(at, format!("include cycle: {}", chain.join(" -> "))));
        }
        if self.include_depth >= MAX_INCLUDE_DEPTH {
            return Err(self.err(
                at,
                format!(
                    "includes nested more than {MAX_INCLUDE_DEPTH} deep while including '{display}'"
                ),
            ));
        }
        let text = read_source(&path).map_err(|e| match e {
            ReadError::Io(e) => self.err(at, format!("cannot include '{display}': {e}")),
            ReadError::Utf8 { line, col } => {
                ConfigError::at(display.clone(), line, col, "file is not valid UTF-8")
            }
        })?;
        let file = self.ctx.sources.add(&path);
        self.ctx.stack.push(Frame { canon, display });
        let result = parse_text(
            &text,
            file,
            parent_dir(&path),
            self.ctx,
            self.depth,
            self.include_depth + 1,
        );
        self.ctx.stack.pop();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn parse(text: &str) -> Result<Table, ConfigError> {
        let mut sources = SourceMap::default();
        parse_str(text, Path::new("<string>"), None, &mut sources)
    }

    fn parse_ok(text: &str) -> Table {
        match parse(text) {
            Ok(t) => t,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn parse_err(text: &str) -> ConfigError {
        match parse(text) {
            Ok(t) => panic!("expected an error, got {t:?}"),
            Err(e) => e,
        }
    }

    fn scalar(v: &Value) -> (&str, ScalarKind) {
        match v {
            Value::Scalar(s) => (s.text.as_str(), s.kind),
            other => panic!("expected a scalar, got {other:?}"),
        }
    }

    fn table(v: &Value) -> &Table {
        match v {
            Value::Table(t) => t,
            other => panic!("expected a table, got {other:?}"),
        }
    }

    fn list(v: &Value) -> &[Value] {
        match v {
            Value::List(items, _) => items,
            other => panic!("expected a list, got {other:?}"),
        }
    }

    fn texts(items: &[Value]) -> Vec<&str> {
        items.iter().map(|v| scalar(v).0).collect()
    }

    fn keys(t: &Table) -> Vec<&str> {
        t.entries.iter().map(|e| e.key.as_str()).collect()
    }

    fn at(e: &ConfigError) -> (u32, u32) {
        (e.line, e.col)
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("eccluster-ecelerity-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("create dir");
            }
            fs::write(&path, text).expect("write file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const DEFAULT_CONFIG: &str = r#"cluster {
  cluster_group = "ec_cluster"
  control_group = "ec_console"
  logs = [
    rejectlog = "/var/log/ecelerity/rejectlog.cluster"
    mainlog = "/var/log/ecelerity/mainlog.cluster"
  ]
  Replicate "inbound_cidr" {}
  # DuraVIP network topology hints
  Topology "" {
    cidrmask = "32"
    interface = "eth1"
  }
}
"#;

    #[test]
    fn reference_default_config() {
        let root = parse_ok(DEFAULT_CONFIG);
        assert_eq!(root.kind, TableKind::Scope);
        assert_eq!(keys(&root), ["cluster"]);
        let cluster = &root.entries[0];
        assert_eq!(cluster.name, None);
        assert_eq!((cluster.span.line, cluster.span.col), (1, 1));
        let body = table(&cluster.value);
        assert_eq!(body.kind, TableKind::Scope);
        assert_eq!((body.span.line, body.span.col), (1, 9));
        assert_eq!(
            keys(body),
            [
                "cluster_group",
                "control_group",
                "logs",
                "Replicate",
                "Topology"
            ]
        );

        let group = &body.entries[0];
        assert_eq!(scalar(&group.value), ("ec_cluster", ScalarKind::Quoted));
        assert_eq!((group.span.line, group.span.col), (2, 3));
        assert_eq!((group.value.span().line, group.value.span().col), (2, 19));

        let logs = table(&body.entries[2].value);
        assert_eq!(logs.kind, TableKind::Dict);
        assert_eq!((logs.span.line, logs.span.col), (4, 10));
        assert_eq!(keys(logs), ["rejectlog", "mainlog"]);
        assert!(logs.entries.iter().all(|e| e.name.is_none()));
        assert_eq!(
            scalar(&logs.entries[1].value).0,
            "/var/log/ecelerity/mainlog.cluster"
        );
        assert_eq!(
            (logs.entries[1].span.line, logs.entries[1].span.col),
            (6, 5)
        );

        let replicate = &body.entries[3];
        assert_eq!(replicate.name.as_deref(), Some("inbound_cidr"));
        let rbody = table(&replicate.value);
        assert_eq!(rbody.kind, TableKind::Scope);
        assert!(rbody.entries.is_empty());

        let topology = &body.entries[4];
        assert_eq!(topology.name.as_deref(), Some(""));
        assert_eq!((topology.span.line, topology.span.col), (10, 3));
        let tbody = table(&topology.value);
        assert_eq!(keys(tbody), ["cidrmask", "interface"]);
        assert_eq!(scalar(&tbody.entries[0].value), ("32", ScalarKind::Quoted));
        assert_eq!(
            scalar(&tbody.entries[1].value),
            ("eth1", ScalarKind::Quoted)
        );
        assert_eq!(
            (tbody.entries[1].span.line, tbody.entries[1].span.col),
            (12, 5)
        );
    }

    #[test]
    fn comments_of_both_kinds_are_ignored() {
        let root = parse_ok(
            "# leading\na = 1 # trailing\n/* block\n spanning { lines ( */ b = /* inline */ 2\nc = x/*y\n/**/d = 3/*",
        );
        assert_eq!(keys(&root), ["a", "b", "c", "d"]);
        assert_eq!(scalar(&root.entries[1].value).0, "2");
        // `/*` opens a comment only where a token may start, so that globs
        // and paths ending in `/*` stay whole.
        assert_eq!(scalar(&root.entries[2].value).0, "x/*y");
        assert_eq!(scalar(&root.entries[3].value).0, "3/*");
        assert_eq!(
            (root.entries[3].span.line, root.entries[3].span.col),
            (6, 5)
        );
    }

    #[test]
    fn case_and_names_are_preserved() {
        let root = parse_ok(
            "CLUSTER { Heartbeats_Per_Sec = 2 }\nbinding \"MyName\" { }\nBINDING other {}",
        );
        assert_eq!(keys(&root), ["CLUSTER", "binding", "BINDING"]);
        assert_eq!(keys(table(&root.entries[0].value)), ["Heartbeats_Per_Sec"]);
        assert_eq!(root.entries[1].name.as_deref(), Some("MyName"));
        assert_eq!(root.entries[2].name.as_deref(), Some("other"));
    }

    #[test]
    fn lists_with_and_without_commas() {
        let root = parse_ok(
            "monitors = ( \"300,6\" \"1800,4\" )\nserver = ( \"127.0.0.1:4809\" )\nSubscriber = ()\nmixed = (a, b,c , ,d)\nnested = ( x ( y z ) [ k = v ] )",
        );
        let lists: Vec<&[Value]> = root.entries.iter().map(|e| list(&e.value)).collect();
        assert_eq!(texts(lists[0]), ["300,6", "1800,4"]);
        assert_eq!(texts(lists[1]), ["127.0.0.1:4809"]);
        assert!(lists[2].is_empty());
        assert_eq!(texts(lists[3]), ["a", "b", "c", "d"]);
        assert_eq!(scalar(&lists[4][0]).0, "x");
        assert_eq!(texts(list(&lists[4][1])), ["y", "z"]);
        assert_eq!(keys(table(&lists[4][2])), ["k"]);
        let span = root.entries[0].value.span();
        assert_eq!((span.line, span.col), (1, 12));
    }

    #[test]
    fn dicts_with_bare_and_quoted_keys() {
        let root = parse_ok(
            "code = [ \"0\" = \"250 ok\" 100 = \"550 x\" ]\nmap = [ 0.0.0.1 = a, b = ( 1 2 ), c = [ d = e ] ]\nempty = []",
        );
        let code = table(&root.entries[0].value);
        assert_eq!(code.kind, TableKind::Dict);
        assert_eq!(keys(code), ["0", "100"]);
        assert_eq!(
            scalar(&code.entries[1].value),
            ("550 x", ScalarKind::Quoted)
        );
        assert_eq!(
            (code.entries[1].span.line, code.entries[1].span.col),
            (1, 25)
        );
        let map = table(&root.entries[1].value);
        assert_eq!(keys(map), ["0.0.0.1", "b", "c"]);
        assert_eq!(texts(list(&map.entries[1].value)), ["1", "2"]);
        assert_eq!(table(&map.entries[2].value).kind, TableKind::Dict);
        assert!(table(&root.entries[2].value).entries.is_empty());
    }

    #[test]
    fn brace_on_next_line() {
        let root = parse_ok("cluster\n{\n  nodename = a\n}\nBinding \"b\"\n\n  {\n}\n");
        assert_eq!(keys(&root), ["cluster", "Binding"]);
        let span = root.entries[0].value.span();
        assert_eq!((span.line, span.col), (2, 1));
        assert_eq!(root.entries[1].name.as_deref(), Some("b"));
    }

    #[test]
    fn bare_values() {
        let root = parse_ok(
            "a = 192.168.0.51\nb = *:4802\nc = -1\nd = 1.0\ne = true\nf = /var/log/x\ng = eth1\th = é€",
        );
        let vals: Vec<(&str, ScalarKind)> = root.entries.iter().map(|e| scalar(&e.value)).collect();
        assert_eq!(
            vals.iter().map(|v| v.0).collect::<Vec<_>>(),
            [
                "192.168.0.51",
                "*:4802",
                "-1",
                "1.0",
                "true",
                "/var/log/x",
                "eth1",
                "é€"
            ]
        );
        assert!(vals.iter().all(|v| v.1 == ScalarKind::Bare));
        // Columns count characters, a tab counts as one.
        assert_eq!(
            (root.entries[7].span.line, root.entries[7].span.col),
            (7, 10)
        );
    }

    #[test]
    fn escapes_in_quoted_strings() {
        let root = parse_ok(r#"a = "q\"s\'b\\n\nt\tx\d" b = 'it\'s "fine"' c = "C:\path""#);
        assert_eq!(scalar(&root.entries[0].value).0, "q\"s'b\\n\nt\tx\\d");
        assert_eq!(scalar(&root.entries[1].value).0, "it's \"fine\"");
        assert_eq!(scalar(&root.entries[2].value).0, "C:\\path");
    }

    #[test]
    fn include_directive_rule() {
        // `include = x` is an option, `include x { }` a scope.
        let root = parse_ok("include = x\nINCLUDE \"y\" { a = 1 }\nreadonly_include = z");
        assert_eq!(keys(&root), ["include", "INCLUDE", "readonly_include"]);
        assert_eq!(root.entries[1].name.as_deref(), Some("y"));
        let e = parse_err("include \"x\" = 1");
        assert_eq!(at(&e), (1, 13));
        assert!(e.message.contains("unexpected '='"), "{}", e.message);
    }

    #[test]
    fn relative_include_and_readonly_include() {
        let dir = TempDir::new();
        dir.write("sub/inner.conf", "inner = 1\n");
        dir.write("sub/part.conf", "# part\npart = yes\ninclude inner.conf\n");
        dir.write("ro.conf", "ro = 2\n");
        let main = dir.write(
            "main.conf",
            "first = 0\ninclude \"sub/part.conf\"\nReadOnly_Include ro.conf\nlast = 9\n",
        );
        let mut sources = SourceMap::default();
        let root = parse_file(&main, &mut sources).expect("parse");
        assert_eq!(keys(&root), ["first", "part", "inner", "ro", "last"]);
        // Included entries keep their own file and position.
        let part = &root.entries[1];
        assert_eq!((part.span.line, part.span.col), (2, 1));
        assert!(sources.path(part.span.file).ends_with("sub/part.conf"));
        assert!(
            sources
                .path(root.entries[2].span.file)
                .ends_with("sub/inner.conf")
        );
        assert_eq!(sources.path(root.entries[4].span.file), main.as_path());
        assert_eq!(sources.files().len(), 4);
    }

    #[test]
    fn parse_str_resolves_against_base_dir() {
        let dir = TempDir::new();
        dir.write("a.conf", "a = 1");
        let mut sources = SourceMap::default();
        let root = parse_str(
            "include a.conf",
            Path::new("<string>"),
            Some(&dir.0),
            &mut sources,
        )
        .expect("parse");
        assert_eq!(keys(&root), ["a"]);
        assert_eq!(sources.path(FileId(0)), Path::new("<string>"));
    }

    #[test]
    fn directory_include_is_sorted_and_skips_dotfiles() {
        let dir = TempDir::new();
        dir.write("conf.d/20-b.conf", "b = 2");
        dir.write("conf.d/10-a.conf", "a = 1");
        dir.write("conf.d/Z.conf", "z = 0");
        dir.write("conf.d/.hidden.conf", "hidden = 1");
        dir.write("conf.d/nested/x.conf", "nested = 1");
        let main = dir.write("main.conf", "include conf.d");
        let mut sources = SourceMap::default();
        let root = parse_file(&main, &mut sources).expect("parse");
        // Byte-wise: digits before upper case; no dotfiles, no recursion.
        assert_eq!(keys(&root), ["a", "b", "z"]);
    }

    #[test]
    fn include_inside_a_scope_and_diamond() {
        let dir = TempDir::new();
        dir.write("common.conf", "shared = 1");
        dir.write("left.conf", "include common.conf\nleft = 1");
        dir.write("right.conf", "include common.conf\nright = 1");
        let main = dir.write(
            "main.conf",
            "cluster {\n  include left.conf\n  include right.conf\n}",
        );
        let mut sources = SourceMap::default();
        let root = parse_file(&main, &mut sources).expect("parse");
        let body = table(&root.entries[0].value);
        assert_eq!(keys(body), ["shared", "left", "shared", "right"]);
    }

    #[test]
    fn include_cycle_names_the_chain() {
        let dir = TempDir::new();
        dir.write("a.conf", "x = 1\ninclude b.conf");
        dir.write("b.conf", "\n\n  include a.conf");
        let mut sources = SourceMap::default();
        let e = parse_file(&dir.0.join("a.conf"), &mut sources).expect_err("cycle");
        assert!(e.file.ends_with("b.conf"), "{}", e.file);
        assert_eq!(at(&e), (3, 3));
        let a = dir.0.join("a.conf").display().to_string();
        let b = dir.0.join("b.conf").display().to_string();
        assert_eq!(e.message, format!("include cycle: {a} -> {b} -> {a}"));

        // A file including itself.
        dir.write("self.conf", "include self.conf");
        let e = parse_file(&dir.0.join("self.conf"), &mut sources).expect_err("cycle");
        assert!(e.message.starts_with("include cycle: "), "{}", e.message);
    }

    #[test]
    fn include_missing_file() {
        let dir = TempDir::new();
        let main = dir.write("main.conf", "a = 1\n  include \"missing.conf\"\n");
        let mut sources = SourceMap::default();
        let e = parse_file(&main, &mut sources).expect_err("missing");
        assert_eq!(e.file, main.display().to_string());
        assert_eq!(at(&e), (2, 3));
        assert!(e.message.contains("missing.conf"), "{}", e.message);
        assert!(e.message.contains("os error"), "{}", e.message);
    }

    #[test]
    fn include_depth_is_bounded() {
        let dir = TempDir::new();
        for i in 0..40 {
            dir.write(&format!("{i}.conf"), &format!("include {}.conf", i + 1));
        }
        dir.write("40.conf", "end = 1");
        let mut sources = SourceMap::default();
        let e = parse_file(&dir.0.join("0.conf"), &mut sources).expect_err("too deep");
        assert!(e.message.contains("nested more than 32"), "{}", e.message);
    }

    #[test]
    fn parse_file_errors() {
        let dir = TempDir::new();
        let missing = dir.0.join("nope.conf");
        let mut sources = SourceMap::default();
        let e = parse_file(&missing, &mut sources).expect_err("missing");
        assert_eq!(e.file, missing.display().to_string());
        assert_eq!(e.line, 0);
        assert!(e.message.contains("os error"), "{}", e.message);

        let bad = dir.0.join("bad.conf");
        fs::write(&bad, b"a = 1\nb = \"caf\xe9\"\n").expect("write");
        let e = parse_file(&bad, &mut sources).expect_err("latin-1");
        assert_eq!(e.message, "file is not valid UTF-8");
        assert_eq!(at(&e), (2, 9));

        // Errors inside a file name that file.
        let broken = dir.write("broken.conf", "a = ");
        let e = parse_file(&broken, &mut sources).expect_err("broken");
        assert_eq!(e.file, broken.display().to_string());
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        let cases: &[(&str, (u32, u32), &str)] = &[
            (
                "cluster {\n  cluster_group\n}",
                (3, 1),
                "expected '=' or '{' after 'cluster_group', found '}'",
            ),
            (
                "a =",
                (1, 4),
                "expected a value after '=', found end of file",
            ),
            ("a = }", (1, 5), "expected a value after '=', found '}'"),
            ("a = 1\n)", (2, 1), "unexpected ')'"),
            ("}", (1, 1), "unexpected '}'"),
            ("= 1", (1, 1), "unexpected '='"),
            ("\"a\" = 1", (1, 1), "expected an option or scope keyword"),
            (
                "a {\n b = 1\n c {\n }\n",
                (5, 1),
                "unclosed '{' opened at line 1",
            ),
            (
                "Binding foo = 1",
                (1, 13),
                "a scope name must be followed by '{'",
            ),
            (
                "Binding \"foo\" bar",
                (1, 15),
                "a scope name must be followed by '{'",
            ),
            ("a = ( 1 2", (1, 10), "unclosed '(' opened at line 1"),
            ("a = ( 1 }", (1, 9), "unexpected '}' in the list"),
            ("a = [ k = v", (1, 12), "unclosed '[' opened at line 1"),
            (
                "a = [ k v ]",
                (1, 9),
                "expected '=' after dictionary key 'k', found 'v'",
            ),
            (
                "a = [ k = ]",
                (1, 11),
                "expected a value after '=', found ']'",
            ),
            ("a = [ ( ]", (1, 7), "unexpected '(' in the dictionary"),
            (
                "a = 1\n  /* never\nclosed",
                (2, 3),
                "unterminated comment: the '/*' at line 2",
            ),
            ("a = \"abc", (1, 5), "unterminated string"),
            (
                "a = 'abc\n'",
                (1, 5),
                "unterminated string: no closing ' before end of line",
            ),
            ("a = \"abc\\", (1, 5), "unterminated string"),
            (
                "include",
                (1, 8),
                "expected '=' or '{' after 'include', found end of file",
            ),
        ];
        for (text, pos, message) in cases {
            let e = parse_err(text);
            assert_eq!(e.file, "<string>");
            assert!(e.message.contains(message), "{text:?}: got {:?}", e.message);
            assert_eq!(at(&e), *pos, "{text:?}: {}", e.message);
        }
    }

    #[test]
    fn forgotten_equals_gets_a_hint() {
        let e = parse_err("cluster {\n  cluster_group \"ec\"\n  nodename = a\n}");
        assert_eq!(at(&e), (3, 3));
        assert_eq!(
            e.message,
            "a scope name must be followed by '{', found 'nodename' after cluster_group \"ec\" \
             (or, if 'cluster_group' is an option, '=' is missing before the value)"
        );
    }

    #[test]
    fn first_error_wins() {
        // A syntax error before an unterminated string is reported first.
        let e = parse_err("a = )\nb = \"unterminated");
        assert_eq!(at(&e), (1, 5));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("a = {}{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        parse_ok(&ok);
        let deep = format!(
            "a = {}{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        let e = parse_err(&deep);
        assert!(e.message.contains("nesting too deep"), "{}", e.message);
        assert_eq!(at(&e), (1, 5 + MAX_NESTING as u32));
    }

    /// xorshift64*: deterministic, dependency-free noise for the fuzz test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn never_panics() {
        let mut inputs: Vec<String> = vec![
            String::new(),
            "{".into(),
            "}".into(),
            "=".into(),
            "a".into(),
            "a b".into(),
            "a = ".into(),
            "/*".into(),
            "/*/".into(),
            "/".into(),
            "\"".into(),
            "'".into(),
            "a = \"\\".into(),
            "a = '\\\n'".into(),
            "a = (".into(),
            "a = [".into(),
            "a = [ b".into(),
            "a = [ b =".into(),
            "a {".into(),
            "a b {".into(),
            "include".into(),
            "include \"\"".into(),
            "é = \"ü\" ∑ { 💥 = ( 🦀 ) }".into(),
            "\u{feff}a = 1".into(),
            "\r\n\r\na\r\n=\r\n1\r\n".into(),
            "a = (".repeat(1000),
            "a = ".to_string() + &"(".repeat(1000),
            "a = ".to_string() + &"[".repeat(1000),
            "a = ".to_string() + &"[ k = ".repeat(1000),
            "a { ".repeat(1000),
            "{".repeat(1000),
            "}".repeat(1000),
            "a = ".to_string() + &"(".repeat(1000) + &")".repeat(1000),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // No letter set that could spell `include`: random input must never
        // touch the file system.
        let alphabet: Vec<char> = "#\"'={}[](),/*\\ \n\tabcXYZ019.:-_é".chars().collect();
        for _ in 0..2000 {
            let len = rng.below(64);
            inputs.push(
                (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect(),
            );
        }
        for _ in 0..200 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            inputs.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        for text in &inputs {
            let result = std::panic::catch_unwind(|| parse(text));
            assert!(result.is_ok(), "panicked on {text:?}");
        }
    }
}
