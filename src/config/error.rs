//! Configuration errors: each names where it was found, which option, what was
//! expected, and, for a misspelling, the nearest valid name.

use std::fmt;

/// One problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or pseudo-path such as `<string>`) the problem is in.
    pub file: String,
    /// 1-based line; 0 when the problem has no single place (a missing option).
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub col: u32,
    /// The option or scope concerned, as a path such as `cluster.heartbeats_per_sec`.
    pub option: Option<String>,
    /// What was wrong and what was expected.
    pub message: String,
    /// The nearest valid name, for an unknown option or scope.
    pub suggestion: Option<String>,
}

impl ConfigError {
    /// An error at a known place.
    pub fn at(file: impl Into<String>, line: u32, col: u32, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            line,
            col,
            option: None,
            message: message.into(),
            suggestion: None,
        }
    }

    /// Names the option this error is about.
    pub fn with_option(mut self, option: impl Into<String>) -> Self {
        self.option = Some(option.into());
        self
    }

    /// Adds a "did you mean" suggestion.
    pub fn with_suggestion(mut self, suggestion: Option<String>) -> Self {
        self.suggestion = suggestion;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        write!(f, ": ")?;
        if let Some(option) = &self.option {
            write!(f, "{option}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean '{s}'?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration; building reports all of them at
/// once rather than making the operator fix one error per run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The candidate closest to `word` by edit distance (case-insensitive), if it is
/// close enough to be a plausible misspelling.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let limit = (word.len() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_misspellings_but_not_strangers() {
        let opts = ["heartbeats_per_sec", "heartbeat_start_delay", "nodename"];
        assert_eq!(
            nearest("hearbeats_per_sec", opts),
            Some("heartbeats_per_sec")
        );
        assert_eq!(nearest("NODENAM", opts), Some("nodename"));
        assert_eq!(nearest("interface", opts), None);
    }

    #[test]
    fn display_names_place_option_and_suggestion() {
        let e = ConfigError::at("a.conf", 3, 5, "unknown option")
            .with_option("cluster.hearbeats_per_sec")
            .with_suggestion(Some("heartbeats_per_sec".into()));
        assert_eq!(
            e.to_string(),
            "a.conf:3:5: cluster.hearbeats_per_sec: unknown option (did you mean 'heartbeats_per_sec'?)"
        );
    }
}
