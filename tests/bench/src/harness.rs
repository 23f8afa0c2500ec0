//! Timing: a guard against super-linear contenders, a warm-up, then repeated timed runs.

use crate::alloc;
use crate::contenders::{Run, Tally};
use crate::workloads::prefix;
use bytes::Bytes;
use std::hint::black_box;
use std::time::Duration;

/// Measured time per cell is about this much (fewer runs for slow contenders).
const BUDGET: Duration = Duration::from_millis(500);
const MIN_RUNS: usize = 3;
const MAX_RUNS: usize = 40;
/// A contender projected to need longer than this for one pass is not timed.
const TOO_SLOW: Duration = Duration::from_secs(4);

pub struct Timing {
    pub median: Duration,
    /// Half the interquartile range, relative to the median.
    pub spread: f64,
    pub runs: usize,
}

pub struct Allocs {
    /// Allocations in one whole pass, per event.
    pub per_event: f64,
    /// Marginal allocations per event: (whole pass − first half) / (events in the second half).
    pub steady: f64,
}

fn time(run: Run, chunks: &[Bytes]) -> (Duration, Tally) {
    let start = thread_cpu_time();
    let tally = black_box(run(black_box(chunks)));
    (thread_cpu_time() - start, tally)
}

/// The CPU time this thread has used. Every contender runs on the calling thread (the async
/// ones under `block_on`), so this is its work; on a shared machine, wall time would also
/// count the time a pass sat descheduled while other processes ran.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which is valid.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(now.tv_sec).expect("non-negative"),
        u32::try_from(now.tv_nsec).expect("below 10^9"),
    )
}

fn total_len(chunks: &[Bytes]) -> usize {
    chunks.iter().map(Bytes::len).sum()
}

/// Times growing prefixes (1/256, 1/128, ... of the input) until one takes 50 ms, and
/// projects a whole pass from it: linearly, or quadratically once doubling the input more
/// than triples the time. `Err` carries the projection when it is over [`TOO_SLOW`].
pub fn guard(run: Run, chunks: &[Bytes]) -> Result<(), String> {
    let total = total_len(chunks);
    let mut len = (total / 256).max(1);
    let mut previous: Option<f64> = None;
    loop {
        let part = prefix(chunks, len);
        let (t, _) = time(run, &part);
        let t = t.as_secs_f64();
        let factor = total as f64 / len as f64;
        let quadratic = previous.is_some_and(|p| p > 1e-3 && t / p > 3.0);
        let projected = if quadratic {
            t * factor * factor
        } else {
            t * factor
        };
        if projected > TOO_SLOW.as_secs_f64() {
            let mbps = len as f64 / t / 1e6;
            return Err(format!(
                "skipped: {} ({mbps:.1} MB/s on a {} KiB prefix; one pass projected at {projected:.0} s)",
                if quadratic {
                    "super-linear"
                } else {
                    "too slow"
                },
                len >> 10
            ));
        }
        if t > 0.05 || len == total {
            return Ok(());
        }
        previous = Some(t);
        len = (len * 2).min(total);
    }
}

/// One warm-up pass per contender (its tally is returned for checking), then timed passes,
/// interleaved round by round so that load from elsewhere on the machine hits every contender
/// alike. A contender gets about [`BUDGET`] of passes ([`MIN_RUNS`]..=[`MAX_RUNS`]).
pub fn measure(runs: &[Run], chunks: &[Bytes]) -> Vec<(Tally, Timing)> {
    let warm: Vec<(Duration, Tally)> = runs.iter().map(|&run| time(run, chunks)).collect();
    let counts: Vec<usize> = warm
        .iter()
        .map(|(t, _)| {
            ((BUDGET.as_secs_f64() / t.as_secs_f64().max(1e-9)) as usize).clamp(MIN_RUNS, MAX_RUNS)
        })
        .collect();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); runs.len()];
    for round in 0..counts.iter().copied().max().unwrap_or(0) {
        for (i, &run) in runs.iter().enumerate() {
            if round < counts[i] {
                times[i].push(time(run, chunks).0);
            }
        }
    }
    warm.into_iter()
        .zip(times)
        .map(|((_, tally), mut times)| {
            times.sort();
            let n = times.len();
            let median = times[n / 2];
            // Half the interquartile range, relative to the median.
            let spread =
                (times[(3 * n) / 4] - times[n / 4]).as_secs_f64() / 2.0 / median.as_secs_f64();
            (
                tally,
                Timing {
                    median,
                    spread,
                    runs: n,
                },
            )
        })
        .collect()
}

/// Allocation counts for a whole pass and for its first half.
pub fn allocations(run: Run, chunks: &[Bytes]) -> Allocs {
    let count = |chunks: &[Bytes]| {
        let before = alloc::count();
        let tally = black_box(run(chunks));
        (alloc::count() - before, tally.events)
    };
    let (whole, events) = count(chunks);
    let half = prefix(chunks, total_len(chunks) / 2);
    let (first, first_events) = count(&half);
    Allocs {
        per_event: whole as f64 / events.max(1) as f64,
        steady: whole.saturating_sub(first) as f64 / (events - first_events).max(1) as f64,
    }
}
