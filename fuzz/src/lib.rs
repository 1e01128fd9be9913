//! Shared input filter for the configuration fuzz targets.

/// Returns the input as text if it is valid UTF-8 and cannot make the
/// ecelerity.conf reader open a device or pseudo-file: an `include` (in any
/// case, so also `readonly_include`) together with a path into `/dev`,
/// `/proc`, `/sys` or `/run` (FIFOs and sockets that would block) is skipped.
/// Other includes stay in: a missing or unreadable file is an error path worth
/// fuzzing, and relative paths resolve inside `fuzz/`.
pub fn admissible(data: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(data).ok()?;
    let lower = text.to_ascii_lowercase();
    if lower.contains("include")
        && ["/dev", "/proc", "/sys", "/run"]
            .iter()
            .any(|p| lower.contains(p))
    {
        return None;
    }
    Some(text)
}
