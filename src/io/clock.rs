//! The wall clock of the hot path.
//!
//! Throttle windows, cache expiry and audit-series windows are measured on
//! the wall clock, because every node must put the same instant in the
//! same window. `SystemTime::now` reads `CLOCK_REALTIME` precisely, which
//! costs 20–45 ns through the vDSO: as much as the rest of a throttle
//! check. `CLOCK_REALTIME_COARSE` is the time of the last timer tick (1–4
//! ms old) for a few nanoseconds, and a few milliseconds are nothing
//! against windows of seconds.

/// Wall-clock milliseconds since the Unix epoch, at most a timer tick old
/// (a clock before 1970 reads as 0).
pub fn coarse_wall_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration;
    // clock_gettime writes only it.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc != 0 {
        // Not on this kernel: the precise clock.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let millis = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1000).saturating_add(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_is_the_wall_clock_within_a_tick() {
        let precise = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let coarse = coarse_wall_ms();
        assert!(
            coarse.abs_diff(precise) < 50,
            "coarse {coarse} vs precise {precise}"
        );
    }
}
