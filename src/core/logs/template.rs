//! The aggregator's `logfile` template: which file a pulled record goes to.
//!
//! `Logs { logfile = "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}" }`
//! (momentum-notes §4.2) is a strftime template plus `%{l}` (the log's key in
//! the node's `logs` dictionary, e.g. `mainlog`), `%{n}` (the node's name)
//! and `%{s}` (the node's subcluster; the notes' default example expands to
//! `/var/log/eccluster/2024/05/21/mainlog/default/node1`).
//!
//! The template is parsed once, when the configuration is loaded, so an
//! unknown `%x` is a configuration error and not a surprise at the first
//! record. Expansion takes a [`BrokenTime`] the caller derived from the
//! record's timestamp with [`BrokenTime::utc`]: the core reads no clock and
//! no timezone, so files are always cut at UTC midnight, whatever the
//! manager's local zone (and `%Z` prints `UTC`).
//!
//! Names come from the network and from other nodes' configuration, so they
//! are made into single path components before they are substituted: a `/`
//! or NUL in a name becomes `_`, and an empty name becomes `_`. A name cannot
//! therefore add directories; and because a name could still combine with
//! the literal text around it into `..`, every expanded path is checked
//! again and refused if it has a `..` component.

use std::fmt::Write;

/// A UTC calendar time, broken down as strftime wants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokenTime {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 is Sunday, as in `struct tm`.
    pub weekday: u32,
    /// Day of the year, 0 for January 1st, as in `struct tm`.
    pub yday: u32,
}

const SECS_PER_DAY: i64 = 86_400;

impl BrokenTime {
    /// The UTC calendar time of `unix` seconds since 1970-01-01T00:00:00Z,
    /// by Howard Hinnant's `civil_from_days`, which is exact for the whole
    /// proleptic Gregorian calendar (leap seconds do not exist in unix time).
    pub fn utc(unix: i64) -> BrokenTime {
        let days = unix.div_euclid(SECS_PER_DAY);
        let secs = unix.rem_euclid(SECS_PER_DAY);
        // Shift the epoch to 0000-03-01 so leap days fall at the end of a
        // year, and count in 400-year eras, which repeat exactly.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let yday =
            CUMULATIVE_DAYS[(month - 1) as usize] + day - 1 + i64::from(month > 2 && is_leap(year));
        BrokenTime {
            year,
            month: month as u32,
            day: day as u32,
            hour: (secs / 3600) as u32,
            minute: (secs / 60 % 60) as u32,
            second: (secs % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
            yday: yday as u32,
        }
    }
}

const CUMULATIVE_DAYS: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

// The strftime conversions understood: the ones that make sense in a file
// name and do not depend on a locale or a timezone database. `%s` (epoch
// seconds) is left out because it is not in C99 and would cut a file per
// second.
const TIME_FIELDS: &str = "YmdHMSyjaAbBhepIFTZz";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Time(char),
    Log,
    Node,
    Subcluster,
}

/// A parsed `logfile` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`, refusing what could never expand to a usable file
    /// name: an unknown or unfinished `%` sequence, a NUL, a relative path
    /// (it would depend on the daemon's working directory), a `..`
    /// component, or a trailing `/` (a directory, not a file).
    pub fn parse(text: &str) -> Result<Template, String> {
        let fail = |why: String| Err(format!("logfile template '{text}': {why}"));
        if text.contains('\0') {
            return fail("contains a NUL byte".into());
        }
        if !text.starts_with('/') {
            return fail("must be an absolute path".into());
        }
        if text.ends_with('/') {
            return fail("ends with '/', so it names a directory, not a file".into());
        }
        if text.split('/').any(|c| c == "..") {
            return fail("has a '..' component".into());
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let piece = match chars.next() {
                None => return fail("ends with a lone '%' (write '%%' for a percent sign)".into()),
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('{') => {
                    let rest = chars.as_str();
                    let Some(end) = rest.find('}') else {
                        return fail("'%{' without a closing '}'".into());
                    };
                    let piece = match &rest[..end] {
                        "l" => Piece::Log,
                        "n" => Piece::Node,
                        "s" => Piece::Subcluster,
                        other => {
                            return fail(format!(
                                "unknown field '%{{{other}}}' (known: %{{l}} log, %{{n}} node, %{{s}} subcluster)"
                            ));
                        }
                    };
                    chars = rest[end + 1..].chars();
                    piece
                }
                Some(f) if TIME_FIELDS.contains(f) => Piece::Time(f),
                Some(f) => {
                    return fail(format!(
                        "unknown conversion '%{f}' (known: %{}, %{{l}}, %{{n}}, %{{s}}, %%)",
                        TIME_FIELDS
                            .chars()
                            .map(String::from)
                            .collect::<Vec<_>>()
                            .join(" %")
                    ));
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    /// The file for a record of log `log` from node `node` in subcluster
    /// `subcluster`, stamped `time`. Refused only when a name joined with the
    /// literal text around it makes a `..` component.
    pub fn expand(
        &self,
        time: &BrokenTime,
        log: &str,
        node: &str,
        subcluster: &str,
    ) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Time(f) => push_time(&mut out, *f, time),
                Piece::Log => push_name(&mut out, log),
                Piece::Node => push_name(&mut out, node),
                Piece::Subcluster => push_name(&mut out, subcluster),
            }
        }
        if out.split('/').any(|c| c == "..") {
            return Err(format!(
                "logfile for log '{log}', node '{node}', subcluster '{subcluster}' would be '{out}', which has a '..' component"
            ));
        }
        Ok(out)
    }
}

fn push_name(out: &mut String, name: &str) {
    if name.is_empty() {
        out.push('_');
        return;
    }
    out.extend(
        name.chars()
            .map(|c| if c == '/' || c == '\0' { '_' } else { c }),
    );
}

fn push_time(out: &mut String, field: char, t: &BrokenTime) {
    let hour12 = match t.hour % 12 {
        0 => 12,
        h => h,
    };
    let weekday = WEEKDAYS[(t.weekday % 7) as usize];
    let month = MONTHS[((t.month + 11) % 12) as usize];
    // Writing to a String cannot fail.
    let _ = match field {
        'Y' => write!(out, "{:04}", t.year),
        'y' => write!(out, "{:02}", t.year.rem_euclid(100)),
        'm' => write!(out, "{:02}", t.month),
        'd' => write!(out, "{:02}", t.day),
        'e' => write!(out, "{:2}", t.day),
        'H' => write!(out, "{:02}", t.hour),
        'I' => write!(out, "{hour12:02}"),
        'M' => write!(out, "{:02}", t.minute),
        'S' => write!(out, "{:02}", t.second),
        'j' => write!(out, "{:03}", t.yday + 1),
        'a' => write!(out, "{}", &weekday[..3]),
        'A' => write!(out, "{weekday}"),
        'b' | 'h' => write!(out, "{}", &month[..3]),
        'B' => write!(out, "{month}"),
        'p' => write!(out, "{}", if t.hour < 12 { "AM" } else { "PM" }),
        'F' => write!(out, "{:04}-{:02}-{:02}", t.year, t.month, t.day),
        'T' => write!(out, "{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
        'Z' => write!(out, "UTC"),
        'z' => write!(out, "+0000"),
        // parse() admits only TIME_FIELDS, all handled above.
        _ => unreachable!("strftime field %{field} passed parse"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}";

    fn t(unix: i64) -> BrokenTime {
        BrokenTime::utc(unix)
    }

    #[test]
    fn the_notes_default_example() {
        // momentum-notes §4.2: "The default gives e.g.
        // /var/log/eccluster/2024/05/21/mainlog/default/node1".
        let tpl = Template::parse(DEFAULT).unwrap();
        let may21 = t(1_716_249_600 + 13 * 3600); // 2024-05-21T13:00:00Z
        assert_eq!(
            tpl.expand(&may21, "mainlog", "node1", "default").unwrap(),
            "/var/log/eccluster/2024/05/21/mainlog/default/node1"
        );
    }

    #[test]
    fn civil_from_days_against_known_dates() {
        let epoch = t(0);
        assert_eq!(
            epoch,
            BrokenTime {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                weekday: 4,
                yday: 0
            }
        );
        // date -u -d @1709210096: Thu Feb 29 12:34:56 UTC 2024, day 060.
        let leap = t(1_709_210_096);
        assert_eq!(
            (
                leap.year,
                leap.month,
                leap.day,
                leap.hour,
                leap.minute,
                leap.second
            ),
            (2024, 2, 29, 12, 34, 56)
        );
        assert_eq!((leap.weekday, leap.yday), (4, 59));
        // Last second of 1999 and first of 2000 (a leap year divisible by 400).
        let eoy = t(946_684_799);
        assert_eq!(
            (eoy.year, eoy.month, eoy.day, eoy.yday),
            (1999, 12, 31, 364)
        );
        assert_eq!(eoy.weekday, 5);
        let y2k = t(946_684_800);
        assert_eq!((y2k.year, y2k.month, y2k.day, y2k.weekday), (2000, 1, 1, 6));
        // 2100 is not a leap year: March 1st is day 059.
        let mar = t(4_107_542_400); // 2100-03-01T00:00:00Z
        assert_eq!((mar.year, mar.month, mar.day, mar.yday), (2100, 3, 1, 59));
        // Before the epoch: 1969-12-31T23:59:59Z, a Wednesday.
        let before = t(-1);
        assert_eq!(
            (
                before.year,
                before.month,
                before.day,
                before.hour,
                before.weekday,
                before.yday
            ),
            (1969, 12, 31, 23, 3, 364)
        );
    }

    #[test]
    fn civil_from_days_walks_every_day_of_four_centuries() {
        // Each day must follow the previous one by the calendar's rules;
        // this checks month lengths and leap years without a table of dates.
        let mut prev = t(-SECS_PER_DAY * 200 * 366);
        let days_in = |y: i64, m: u32| match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        for i in 1..(400 * 366) {
            let cur = t(-SECS_PER_DAY * 200 * 366 + i * SECS_PER_DAY);
            assert_eq!(cur.weekday, (prev.weekday + 1) % 7);
            if prev.day < days_in(prev.year, prev.month) {
                assert_eq!(
                    (cur.year, cur.month, cur.day),
                    (prev.year, prev.month, prev.day + 1)
                );
                assert_eq!(cur.yday, prev.yday + 1);
            } else if prev.month < 12 {
                assert_eq!(
                    (cur.year, cur.month, cur.day),
                    (prev.year, prev.month + 1, 1)
                );
                assert_eq!(cur.yday, prev.yday + 1);
            } else {
                assert_eq!(
                    (cur.year, cur.month, cur.day, cur.yday),
                    (prev.year + 1, 1, 1, 0)
                );
            }
            prev = cur;
        }
    }

    #[test]
    fn every_time_field() {
        // 2024-02-29T15:04:05Z, a Thursday.
        let time = t(1_709_219_045);
        let tpl =
            Template::parse("/l/%Y|%y|%m|%d|%e|%H|%I|%M|%S|%j|%a|%A|%b|%h|%B|%p|%F|%T|%Z|%z|%%")
                .unwrap();
        assert_eq!(
            tpl.expand(&time, "", "", "").unwrap(),
            "/l/2024|24|02|29|29|15|03|04|05|060|Thu|Thursday|Feb|Feb|February|PM|2024-02-29|15:04:05|UTC|+0000|%"
        );
        let morning = t(1_704_067_200 + 5); // 2024-01-01T00:00:05Z, a Monday
        let tpl = Template::parse("/l/%e.%I%p.%a.%j").unwrap();
        assert_eq!(
            tpl.expand(&morning, "", "", "").unwrap(),
            "/l/ 1.12AM.Mon.001"
        );
    }

    #[test]
    fn names_are_single_components() {
        let tpl = Template::parse(DEFAULT).unwrap();
        let time = t(0);
        assert_eq!(
            tpl.expand(&time, "main/log", "../../etc", "").unwrap(),
            "/var/log/eccluster/1970/01/01/main_log/_/.._.._etc"
        );
        assert_eq!(
            tpl.expand(&time, "x", "a\0b", "s").unwrap(),
            "/var/log/eccluster/1970/01/01/x/s/a_b"
        );
        // A name that is itself "..", or becomes ".." with the literal text.
        assert!(
            tpl.expand(&time, "x", "..", "s")
                .unwrap_err()
                .contains("'..'")
        );
        let dotted = Template::parse("/logs/.%{n}").unwrap();
        assert!(dotted.expand(&time, "x", ".", "s").is_err());
        assert_eq!(dotted.expand(&time, "x", "..", "s").unwrap(), "/logs/...");
    }

    #[test]
    fn refusals_at_configuration_time() {
        let why = |s: &str| Template::parse(s).unwrap_err();
        assert!(why("/x/%Q").contains("unknown conversion '%Q'"));
        assert!(why("/x/%{q}").contains("unknown field '%{q}'"));
        assert!(why("/x/%{l").contains("without a closing"));
        assert!(why("/x/%").contains("lone '%'"));
        assert!(why("/x/\0").contains("NUL"));
        assert!(why("x/%Y").contains("absolute"));
        assert!(why("").contains("absolute"));
        assert!(why("/x/%Y/").contains("directory"));
        assert!(why("/var/log/../etc/%{n}").contains("'..'"));
        // A literal "%" that happens to precede a brace is fine when doubled.
        let tpl = Template::parse("/x/%%{n}").unwrap();
        assert_eq!(tpl.expand(&t(0), "l", "n", "s").unwrap(), "/x/%{n}");
    }
}
