//! What a search costs the machine: the process's CPU seconds (every thread) and its peak
//! resident memory over the search, as the benchmark compares with the peers' (which measure
//! their driver and server processes the same way).

/// A stretch of work being measured: started by [`CostMeter::start`], read by
/// [`CostMeter::finish`].
pub(crate) struct CostMeter {
    cpu_start: Option<f64>,
}

/// CPU seconds and peak resident memory of a measured stretch (None where the platform does
/// not say).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// CPU seconds of the process over the stretch (user + system, all threads).
    pub cpu_seconds: Option<f64>,
    /// Peak resident memory (MB) during the stretch: on Linux the peak is reset at the start
    /// (`/proc/self/clear_refs`), so it is this stretch's; elsewhere the process's so far.
    pub peak_rss_mb: Option<f64>,
}

impl CostMeter {
    /// Starts measuring (and, on Linux, resets the process's peak resident memory).
    pub(crate) fn start() -> Self {
        reset_peak_rss();
        Self {
            cpu_start: cpu_seconds(),
        }
    }

    /// The cost since [`CostMeter::start`].
    pub(crate) fn finish(&self) -> Cost {
        Cost {
            cpu_seconds: match (self.cpu_start, cpu_seconds()) {
                (Some(a), Some(b)) => Some((b - a).max(0.0)),
                _ => None,
            },
            peak_rss_mb: peak_rss_mb(),
        }
    }
}

/// This process's resource usage so far (every thread).
#[cfg(unix)]
fn rusage() -> Option<libc::rusage> {
    // SAFETY: getrusage writes the struct it is given and reads nothing else.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }
}

/// User + system CPU seconds of this process so far, every thread.
#[cfg(unix)]
fn cpu_seconds() -> Option<f64> {
    let usage = rusage()?;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

#[cfg(not(unix))]
fn cpu_seconds() -> Option<f64> {
    None
}

/// Resets the peak resident memory the kernel reports (VmHWM) to the current resident size.
fn reset_peak_rss() {
    #[cfg(target_os = "linux")]
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory in MB (since the last reset by [`CostMeter::start`]):
/// VmHWM on Linux, else the process's maximum resident size.
pub fn peak_rss_mb() -> Option<f64> {
    #[cfg(target_os = "linux")]
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
        if let Some(kb) = kb {
            return Some(kb / 1024.0);
        }
    }
    max_rss_mb()
}

#[cfg(unix)]
fn max_rss_mb() -> Option<f64> {
    let usage = rusage()?;
    // Kilobytes on Linux, bytes on macOS.
    let kb = if cfg!(target_os = "macos") {
        usage.ru_maxrss as f64 / 1024.0
    } else {
        usage.ru_maxrss as f64
    };
    Some(kb / 1024.0)
}

#[cfg(not(unix))]
fn max_rss_mb() -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stretch_of_work_costs_cpu_time_and_its_memory_shows_in_the_peak() {
        let meter = CostMeter::start();
        // About 64 MB touched, and some arithmetic on it.
        let mut v = vec![1u8; 64 << 20];
        let mut acc = 0u64;
        for _ in 0..4 {
            for (i, x) in v.iter_mut().enumerate().step_by(64) {
                *x = x.wrapping_add(i as u8);
                acc = acc.wrapping_add(*x as u64);
            }
        }
        std::hint::black_box(acc);
        let cost = meter.finish();
        drop(v);
        if cfg!(unix) {
            assert!(cost.cpu_seconds.unwrap() > 0.0, "{cost:?}");
            assert!(cost.peak_rss_mb.unwrap() >= 64.0, "{cost:?}");
        }
    }
}
