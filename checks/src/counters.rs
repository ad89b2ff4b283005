//! What the rate checks (`cpu`, `net`, `diskio`) share: the previous sample each keeps between
//! runs, the `include`/`exclude` name filters, kernel-given names made safe to show, and rates
//! written for a human.
//!
//! A rate needs two reads of a counter. A check takes its first read when it is built, so its
//! first run (the agent primes every check as it starts) already has a value; a run that comes
//! sooner than [`MIN_WINDOW`] after the previous read (less 5 %: a run on a 1 s schedule lands
//! a little early as often as late) first waits out the rest, so no rate is taken over a few
//! milliseconds of 10 ms clock ticks.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The shortest time a rate is measured over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// The previous read of a check's counters and when it was taken.
pub struct Previous<S> {
    last: Mutex<Option<(S, Instant)>>,
    /// [`MIN_WINDOW`]; tests shorten it.
    pub min_window: Duration,
}

/// Without the read itself: a check's `Debug` shows its configuration, which two checks built
/// from the same settings share (`node-agent/tests/example_config.rs` compares them).
impl<S> std::fmt::Debug for Previous<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Previous")
            .field("min_window", &self.min_window)
            .finish_non_exhaustive()
    }
}

impl<S> Previous<S> {
    /// Starts from `first` (the read taken when the check was built), if it succeeded.
    pub fn new(first: Option<S>) -> Self {
        Previous {
            last: Mutex::new(first.map(|s| (s, Instant::now()))),
            min_window: MIN_WINDOW,
        }
    }

    /// Makes the previous read look `by` older (tests: a run "10 s" after the first read).
    #[cfg(test)]
    pub fn backdate(&self, by: Duration) {
        if let Some((_, at)) = self.lock().as_mut() {
            *at = at.checked_sub(by).expect("uptime exceeds the backdating");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<(S, Instant)>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the counters again (taking a first read and waiting [`Self::min_window`] if there
    /// is none yet), hands the previous and the new read to `rates` with the time between
    /// them, and keeps the new read for the next run. A read that fails keeps the old one.
    pub async fn next<R>(
        &self,
        read: impl Fn() -> Result<S, String>,
        rates: impl FnOnce(&S, &S, Duration) -> R,
    ) -> Result<R, String> {
        let since = self.lock().as_ref().map(|(_, at)| at.elapsed());
        let wait = match since {
            // A run on a schedule as long as the window comes a hair early as often as late
            // (its read lands anywhere in its wake-up): that is a window all the same, and
            // waiting out the hair would cost a wake-up of its own every run.
            Some(elapsed) if elapsed + self.min_window / 20 >= self.min_window => Duration::ZERO,
            Some(elapsed) => self.min_window.saturating_sub(elapsed),
            None => {
                let first = read()?;
                *self.lock() = Some((first, Instant::now()));
                self.min_window
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let current = read()?;
        let now = Instant::now();
        let mut last = self.lock();
        let out = last
            .as_ref()
            .map(|(prev, at)| rates(prev, &current, now.saturating_duration_since(*at)));
        *last = Some((current, now));
        out.ok_or_else(|| "no previous read to compare with".to_string())
    }
}

/// How long a [`DeviceFacts`] answer is trusted while the kernel lists the same devices.
pub const FACTS_MAX_AGE: Duration = Duration::from_secs(300);

/// What a rate check looks up in `/sys` about the devices the kernel lists (which network
/// interfaces are physical, which block devices are whole disks), kept between runs: looked up
/// again when the list of names changes (a device came, went or was renamed) and at least
/// every [`FACTS_MAX_AGE`]. One `lstat` per interface, or a directory listing, per run was
/// most of what these checks cost after their one read of `/proc`.
pub struct DeviceFacts<T> {
    cached: Mutex<Option<Kept<T>>>,
}

/// The names the facts were looked up for, when, and the facts.
type Kept<T> = (Vec<String>, Instant, std::sync::Arc<T>);

impl<T> Default for DeviceFacts<T> {
    fn default() -> Self {
        DeviceFacts {
            cached: Mutex::new(None),
        }
    }
}

/// Without the facts: two checks built from the same settings compare equal.
impl<T> std::fmt::Debug for DeviceFacts<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceFacts").finish_non_exhaustive()
    }
}

impl<T> DeviceFacts<T> {
    /// The facts for the devices `names` (as the kernel lists them, in its order): the kept
    /// ones if the kernel listed exactly these names when they were looked up, less than
    /// [`FACTS_MAX_AGE`] ago; else `look_up()`'s, kept for the next run. A failed look-up keeps
    /// nothing.
    pub fn get<'a>(
        &self,
        names: impl Iterator<Item = &'a str> + Clone,
        look_up: impl FnOnce() -> Result<T, String>,
    ) -> Result<std::sync::Arc<T>, String> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, at, facts)) = cached.as_ref()
            && at.elapsed() < FACTS_MAX_AGE
            && kept.iter().map(String::as_str).eq(names.clone())
        {
            return Ok(std::sync::Arc::clone(facts));
        }
        *cached = None;
        let facts = std::sync::Arc::new(look_up()?);
        *cached = Some((
            names.map(str::to_string).collect(),
            Instant::now(),
            std::sync::Arc::clone(&facts),
        ));
        Ok(facts)
    }
}

/// `count / seconds`, rounded to two decimals.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    round2(count as f64 / secs)
}

/// Rounds to two decimals, for the heartbeat's figures.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A byte rate for a summary: `512 B/s`, `1.5 KiB/s`, `12.0 MiB/s`, `1.1 GiB/s`.
pub fn bytes_per_s(v: f64) -> String {
    const UNITS: [&str; 4] = ["KiB/s", "MiB/s", "GiB/s", "TiB/s"];
    if v < 1024.0 {
        return format!("{v:.0} B/s");
    }
    let mut v = v / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A name the kernel gave a device (network interface, block device) as the heartbeat may
/// carry it: each character that could make it read as something else
/// ([`vaultmesh_proto::text::deceptive`]: control, bidirectional, invisible) written as
/// `\u{…}`, and cut to [`vaultmesh_proto::heartbeat::limits::DEVICE_NAME_MAX`] bytes, so a
/// hostile name is shown for what it is instead of getting the heartbeat refused.
pub fn device_name(raw: &str) -> String {
    use vaultmesh_proto::heartbeat::limits::DEVICE_NAME_MAX;
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let piece = if vaultmesh_proto::text::deceptive(c, &[]) {
            format!("\\u{{{:x}}}", u32::from(c))
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > DEVICE_NAME_MAX {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Which devices a check reports: `include` globs (if any, only the names matching one, and
/// nothing else is skipped) and `exclude` globs (never).
#[cfg(any(feature = "net", feature = "diskio"))]
#[derive(Debug, Default)]
pub struct NameFilter {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

#[cfg(any(feature = "net", feature = "diskio"))]
impl NameFilter {
    /// Compiles the globs, naming the key of the first that is not one.
    pub fn new(
        include: &[String],
        exclude: &[String],
    ) -> Result<Self, vaultmesh_agent_core::registry::CheckConfigError> {
        let compile = |key: &str, globs: &[String]| {
            globs
                .iter()
                .map(|g| {
                    glob::Pattern::new(g).map_err(|e| {
                        vaultmesh_agent_core::registry::CheckConfigError::new(
                            key,
                            format!("{g:?} is not a glob: {e}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(NameFilter {
            include: compile("include", include)?,
            exclude: compile("exclude", exclude)?,
        })
    }

    /// Whether `include` was given.
    pub fn has_include(&self) -> bool {
        !self.include.is_empty()
    }

    /// Whether to report `name`: never if excluded; if `include` was given, exactly when it
    /// matches; otherwise what `by_default` says (asked only then, as it may look at `/sys`).
    pub fn wants(&self, name: &str, by_default: impl FnOnce() -> bool) -> bool {
        if self.exclude.iter().any(|p| p.matches(name)) {
            return false;
        }
        if self.has_include() {
            return self.include.iter().any(|p| p.matches(name));
        }
        by_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_facts_are_looked_up_again_when_the_devices_change_and_a_failure_keeps_nothing() {
        let facts = DeviceFacts::<usize>::default();
        let mut look_ups = 0;
        let mut get = |names: &[&str], ok: bool| {
            facts.get(names.iter().copied(), || {
                look_ups += 1;
                if ok {
                    Ok(look_ups)
                } else {
                    Err("no /sys".into())
                }
            })
        };
        assert_eq!(*get(&["lo", "eth0"], true).unwrap(), 1);
        assert_eq!(
            *get(&["lo", "eth0"], true).unwrap(),
            1,
            "the same devices: kept"
        );
        assert_eq!(*get(&["lo", "eth0", "eth1"], true).unwrap(), 2, "one came");
        assert_eq!(*get(&["lo", "eth1"], true).unwrap(), 3, "one went");
        assert_eq!(*get(&["lo", "eth2"], true).unwrap(), 4, "renamed");
        assert_eq!(get(&["lo"], false).unwrap_err(), "no /sys");
        assert_eq!(
            *get(&["lo"], true).unwrap(),
            6,
            "a failed look-up kept nothing"
        );
        assert_eq!(*get(&["lo"], true).unwrap(), 6);
        let old = facts.cached.lock().unwrap().as_mut().map(|c| {
            c.1 = Instant::now().checked_sub(FACTS_MAX_AGE).unwrap();
        });
        assert!(old.is_some());
        let again = facts.get(["lo"].into_iter(), || Ok(7)).unwrap();
        assert_eq!(*again, 7, "looked up again after FACTS_MAX_AGE");
    }

    /// A run on a schedule as long as the window reads at once, even a little early; a run
    /// that comes well inside the window waits out the rest, and its rate spans the window.
    #[tokio::test]
    async fn a_run_a_little_early_reads_at_once_and_one_well_inside_the_window_waits() {
        let window = Duration::from_millis(400);
        let mut prev = Previous::new(Some(0u64));
        prev.min_window = window;
        // 390 ms of 400: within 5 %, read now (ready at the first poll).
        prev.backdate(Duration::from_millis(390));
        let mut run = std::pin::pin!(prev.next(|| Ok(1), |_, _, over| over));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(rate) = run.as_mut().poll(&mut cx) else {
            panic!("a run 390 ms into a 400 ms window waited");
        };
        let over = rate.expect("a rate");
        assert!(over >= Duration::from_millis(390), "{over:?}");
        // 100 ms of 400: wait out the other 300.
        prev.backdate(Duration::from_millis(100));
        let asked = Instant::now();
        let over = prev
            .next(|| Ok(2), |_, _, over| over)
            .await
            .expect("a rate");
        assert!(
            asked.elapsed() >= Duration::from_millis(250),
            "{:?}",
            asked.elapsed()
        );
        assert!(over >= window, "{over:?}");
    }

    #[test]
    fn hostile_names_are_shown_escaped_and_bounded() {
        assert_eq!(device_name("eth0"), "eth0");
        assert_eq!(device_name("wlp2s0-café"), "wlp2s0-café");
        assert_eq!(device_name("eth\u{202e}0"), "eth\\u{202e}0");
        assert_eq!(device_name("a\u{1b}[2J"), "a\\u{1b}[2J");
        assert_eq!(device_name("zero\u{200b}w"), "zero\\u{200b}w");
        let long = device_name(&"x".repeat(100));
        assert_eq!(long.len(), 64);
        // Escapes are never cut in half.
        let cut = device_name(&format!("{}\u{202e}", "y".repeat(60)));
        assert_eq!(cut, "y".repeat(60));
        for n in [device_name("\u{7}\u{2066}"), long, cut] {
            assert_eq!(vaultmesh_proto::text::first_deceptive(&n, &[]), None);
        }
    }

    #[test]
    fn rates_for_humans() {
        assert_eq!(bytes_per_s(0.0), "0 B/s");
        assert_eq!(bytes_per_s(1023.0), "1023 B/s");
        assert_eq!(bytes_per_s(1536.0), "1.5 KiB/s");
        assert_eq!(bytes_per_s(12.0 * 1048576.0), "12.0 MiB/s");
        assert_eq!(per_second(3, Duration::from_millis(1500)), 2.0);
        assert_eq!(per_second(1, Duration::from_secs(3)), 0.33);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_waits_out_the_window_and_keeps_the_new_read() {
        let counter = std::sync::atomic::AtomicU64::new(10);
        let read = || Ok(counter.fetch_add(5, std::sync::atomic::Ordering::SeqCst));
        // No first read: the run takes one, waits the window, and reads again.
        let p: Previous<u64> = Previous::new(None);
        let (a, b, _) = p.next(read, |a, b, d| (*a, *b, d)).await.unwrap();
        assert_eq!((a, b), (10, 15));
        let (a, b, _) = p.next(read, |a, b, d| (*a, *b, d)).await.unwrap();
        assert_eq!((a, b), (15, 20), "the new read is the next baseline");
        // A failing read keeps the baseline.
        assert!(p.next(|| Err("gone".into()), |_, _, _| ()).await.is_err());
        let (a, _, _) = p.next(read, |a, b, d| (*a, *b, d)).await.unwrap();
        assert_eq!(a, 20);
    }

    #[cfg(any(feature = "net", feature = "diskio"))]
    #[test]
    fn name_filters() {
        let f = NameFilter::new(&[], &["docker*".into()]).unwrap();
        assert!(f.wants("eth0", || true));
        assert!(!f.wants("eth0", || false));
        assert!(!f.wants("docker0", || true));
        let f = NameFilter::new(&["lo".into(), "veth*".into()], &["veth9".into()]).unwrap();
        assert!(f.wants("lo", || false), "include overrides the default");
        assert!(f.wants("veth1", || false));
        assert!(!f.wants("veth9", || true));
        assert!(!f.wants("eth0", || true), "include lists every name wanted");
        let e = NameFilter::new(&[], &["[eth".into()]).unwrap_err();
        assert_eq!(e.key, "exclude");
        assert!(e.reason.contains("\"[eth\" is not a glob"), "{}", e.reason);
    }
}
