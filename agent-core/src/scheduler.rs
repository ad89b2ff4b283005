//! Runs the enabled checks, each on its own interval, and keeps the latest run of each.
//!
//! - **Splay:** a check's scheduled runs (after the one every check makes as the agent
//!   starts) are offset by a deterministic fraction of its interval derived from the node id,
//!   so a fleet restarted together does not probe in lockstep, yet one node always probes at
//!   the same phase. Checks of one node that share an interval share the phase too: they run
//!   in one wake-up of the agent instead of one each (each wake-up costs a context switch,
//!   which on a small VM is most of a cheap check's cost).
//! - **Timeout:** a run that exceeds the check's timeout is abandoned (dropped) and yields
//!   `unknown`.
//! - **Isolation:** a run that panics yields `unknown` with the panic message and the agent
//!   keeps going. Runs are polled in the scheduler's own task under `catch_unwind`, not
//!   spawned: a task, a join handle and a timer per run cost more than most checks.
//! - **Own cost:** every run's duration is logged at debug level; each check's run count, mean
//!   and longest duration are logged at info level after its first run and then hourly.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vaultmesh_proto::CheckResult;

use crate::check::{CheckContext, CheckOutcome, CheckRun};
use crate::registry::ConfiguredCheck;
use vaultmesh_process::duration;

/// Runs one check once, with timeout and panic isolation. A run that timed out or panicked is
/// `unknown` and contributes nothing to the heartbeat.
///
/// The run is polled right here, inside [`futures_util::FutureExt::catch_unwind`] and
/// [`tokio::time::timeout`], not spawned as a task of its own: a panic is caught as a spawned
/// task's would be (and dropping the run after a timeout too), a run over its timeout is
/// dropped (cut off, as aborting its task did), and a check that finishes without waiting
/// (reading a `/proc` file) costs no task, no join handle and no timer. `ctx` is used as it
/// is when its `timeout` already is the check's (the scheduler keeps one such context per
/// check), else copied with it.
pub async fn run_isolated(check: &ConfiguredCheck, ctx: &CheckContext) -> CheckRun {
    use futures_util::FutureExt;
    use std::panic::AssertUnwindSafe;

    let started = Instant::now();
    let observed_at = Utc::now();
    let timeout = check.settings.timeout;
    let ctx = if ctx.timeout == Some(timeout) {
        std::borrow::Cow::Borrowed(ctx)
    } else {
        let mut own = ctx.clone();
        own.timeout = Some(timeout);
        std::borrow::Cow::Owned(own)
    };
    // Making the run may panic too (a hand-written `run` that does work before its future).
    let made = std::panic::catch_unwind(AssertUnwindSafe(|| check.check.run(&ctx)));
    let (polled, dropped) = match made {
        Ok(mut run) => {
            let polled =
                tokio::time::timeout(timeout, AssertUnwindSafe(&mut run).catch_unwind()).await;
            // A run cut off by its timeout is dropped here; a panic in its drop is the check's too.
            let dropped = std::panic::catch_unwind(AssertUnwindSafe(move || drop(run)));
            (polled, dropped)
        }
        Err(payload) => (Ok(Err(payload)), Ok(())),
    };
    let outcome = match (polled, dropped) {
        (Ok(Ok(outcome)), Ok(())) => outcome,
        (Ok(Err(payload)), _) | (Err(_), Err(payload)) | (Ok(Ok(_)), Err(payload)) => {
            let msg = panic_message(payload);
            tracing::error!(check = check.name(), panic = %msg, "Check panicked.");
            CheckOutcome::unknown(format!("check panicked: {msg}"))
        }
        (Err(_), Ok(())) => {
            tracing::warn!(check = check.name(), timeout = %duration::format(timeout), "Check timed out.");
            CheckOutcome::unknown(format!("timed out after {}", duration::format(timeout)))
        }
    };
    let result = CheckResult {
        name: check.name().to_string(),
        status: outcome.status,
        summary: outcome.summary,
        observed_at,
        duration_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
        metrics: outcome.metrics,
        details: outcome.details,
    };
    CheckRun {
        result,
        contributes: outcome.contribution,
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Deterministic offset in `[0, interval)` for this node (FNV-1a over its id).
pub fn splay(node_id: Uuid, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

/// Owns the enabled checks and their latest runs.
#[derive(Debug)]
pub struct Scheduler {
    checks: Vec<ConfiguredCheck>,
    ctx: CheckContext,
    /// `ctx` with each check's timeout, one per check (in the order of `checks`), so a run
    /// copies no context.
    ctxs: Vec<CheckContext>,
    /// Each check's latest run, result and contribution together: a run replaces both, so an
    /// `unknown` run leaves no measurement of an earlier one behind.
    latest: RwLock<BTreeMap<&'static str, CheckRun>>,
    /// Each check's latest finished scheduled run (in the order of `checks`), and a signal
    /// each time one finishes: what [`Self::ran_since`] waits on.
    finished: tokio::sync::watch::Sender<Vec<Finished>>,
}

/// A check's latest finished scheduled run: its tick (`None` before the first) and how long
/// it took.
#[derive(Debug, Clone, Copy, Default)]
struct Finished {
    tick: Option<tokio::time::Instant>,
    took: Duration,
}

impl Scheduler {
    /// Keeps only the enabled checks.
    pub fn new(checks: Vec<ConfiguredCheck>, ctx: CheckContext) -> Self {
        let checks: Vec<ConfiguredCheck> =
            checks.into_iter().filter(|c| c.settings.enabled).collect();
        let ctxs = checks
            .iter()
            .map(|c| CheckContext {
                timeout: Some(c.settings.timeout),
                ..ctx.clone()
            })
            .collect();
        let finished = tokio::sync::watch::Sender::new(vec![Finished::default(); checks.len()]);
        Scheduler {
            checks,
            ctx,
            ctxs,
            latest: RwLock::new(BTreeMap::new()),
            finished,
        }
    }

    pub fn checks(&self) -> &[ConfiguredCheck] {
        &self.checks
    }

    /// Runs every enabled check once, concurrently, and records the results.
    pub async fn run_all_once(&self) -> Vec<CheckRun> {
        let runs = self
            .checks
            .iter()
            .zip(&self.ctxs)
            .map(|(c, ctx)| run_isolated(c, ctx));
        let results = futures_util::future::join_all(runs).await;
        for r in &results {
            self.record(r.clone());
        }
        results
    }

    /// Runs every enabled check once, concurrently, waiting at most `limit`: checks still
    /// running then (a long scan) finish in the background and record their result when done,
    /// so a slow check never holds up the agent's start.
    pub async fn prime(self: &Arc<Self>, limit: Duration) {
        let mut set = tokio::task::JoinSet::new();
        for index in 0..self.checks.len() {
            let this = Arc::clone(self);
            set.spawn(async move {
                let result = run_isolated(&this.checks[index], &this.ctxs[index]).await;
                this.record(result);
            });
        }
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::info!(limit = %duration::format(limit), "Some checks are still running; starting without waiting for them.");
            set.detach_all();
        }
    }

    fn record(&self, run: CheckRun) {
        let Some(check) = self.checks.iter().find(|c| c.name() == run.result.name) else {
            return;
        };
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        latest.insert(check.name(), run);
    }

    /// The latest run of each check that has run, in the order of the checks.
    pub fn latest(&self) -> Vec<CheckRun> {
        let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
        self.checks
            .iter()
            .filter_map(|c| latest.get(c.name()).cloned())
            .collect()
    }

    /// When the scheduled runs every `interval` begin, for loops started at `start` (just
    /// after [`Self::prime`] ran every check): at this node's splay of the interval, or an
    /// interval later when the splay is under [`FIRST_RUN_MIN_GAP`] (never within a rate
    /// check's window of prime's read: a run that soon after the read before it waited out
    /// its window every time, a wake-up of its own each run, apart from the checks it shares
    /// an interval with; waiting a whole interval always would put a long check's second run,
    /// the scan's every 6 h, up to two intervals after the start). The heartbeat ticks at the
    /// same instants, so it goes in the same wake-up as the checks that share its interval.
    pub fn first_run_at(
        &self,
        start: tokio::time::Instant,
        interval: Duration,
    ) -> tokio::time::Instant {
        let first = splay(self.ctx.node_id, interval);
        if first < FIRST_RUN_MIN_GAP {
            start + first + interval
        } else {
            start + first
        }
    }

    /// Starts one loop per check, once [`Self::prime`] has run every check (at `start`), and
    /// one clock per interval: each clock ticks at [`Self::first_run_at`] and then every
    /// interval, and wakes every loop of its interval, which runs its check, until `cancel`
    /// fires. One timer per interval, not one per check: re-arming a timer for the next tick
    /// wakes the runtime's driver (an `eventfd` write), once a tick for all the checks.
    pub fn spawn(
        self: &Arc<Self>,
        start: tokio::time::Instant,
        cancel: CancellationToken,
    ) -> tokio::task::JoinSet<()> {
        type Clock = tokio::sync::watch::Sender<Option<tokio::time::Instant>>;
        let mut set = tokio::task::JoinSet::new();
        let mut clocks: BTreeMap<Duration, Clock> = BTreeMap::new();
        for (index, check) in self.checks.iter().enumerate() {
            let this = Arc::clone(self);
            let cancel = cancel.clone();
            let mut ticks = (clocks.entry(check.settings.interval))
                .or_insert_with(|| Clock::new(None))
                .subscribe();
            set.spawn(async move {
                let mut cost = RunCost::default();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        changed = ticks.changed() => if changed.is_err() { return },
                    }
                    let Some(tick) = *ticks.borrow_and_update() else {
                        continue;
                    };
                    let check = &this.checks[index];
                    let began = tokio::time::Instant::now();
                    let run = tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = run_isolated(check, &this.ctxs[index]) => r,
                    };
                    let took = began.elapsed();
                    tracing::debug!(check = check.name(), status = %run.result.status, duration_us = took.as_micros() as u64, "Check ran.");
                    cost.add(check.name(), took);
                    this.record(run);
                    let done = Finished { tick: Some(tick), took };
                    this.finished.send_modify(|f| f[index] = done);
                }
            });
        }
        for (interval, clock) in clocks {
            let cancel = cancel.clone();
            let mut ticker = tokio::time::interval_at(self.first_run_at(start, interval), interval);
            // A tick missed (the runtime held up longer than an interval) is skipped: the
            // clock keeps its phase, which the heartbeat's shares.
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            set.spawn(async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        // Every loop of this interval has ended.
                        _ = clock.closed() => return,
                        tick = ticker.tick() => clock.send_replace(Some(tick)),
                    };
                }
            });
        }
        set
    }

    /// Waits until every check run every `interval` has finished a scheduled run of `tick` or
    /// a later one (at once when no check has that interval). The heartbeat waits on this, at
    /// most `patience`, so that it carries the runs of its own wake-up, not those an interval
    /// old. A check whose latest scheduled run took longer than `patience` (one stuck until its
    /// timeout) is not waited for: the heartbeat would wait out its patience every time for
    /// nothing; it is waited for again once one of its runs is quick.
    pub async fn ran_since(
        &self,
        interval: Duration,
        tick: tokio::time::Instant,
        patience: Duration,
    ) {
        let due: Vec<usize> = {
            let finished = self.finished.borrow();
            (self.checks.iter().enumerate())
                .filter(|(i, c)| c.settings.interval == interval && finished[*i].took <= patience)
                .map(|(i, _)| i)
                .collect()
        };
        let mut finished = self.finished.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail while we borrow it.
        let _ = finished
            .wait_for(|f| due.iter().all(|&i| f[i].tick.is_some_and(|t| t >= tick)))
            .await;
    }
}

/// The least time between `prime`'s run of a check and its first scheduled run: a rate
/// check's window (the `cpu`, `net` and `diskio` checks measure over at least a second).
pub const FIRST_RUN_MIN_GAP: Duration = Duration::from_secs(1);

/// How often each check's durations are summarised at info level.
const COST_REPORT_EVERY: Duration = Duration::from_secs(3600);

/// One check's run durations since its last summary.
#[derive(Debug, Default)]
struct RunCost {
    runs: u32,
    total: Duration,
    longest: Duration,
    reported: Option<Instant>,
}

impl RunCost {
    fn add(&mut self, check: &str, took: Duration) {
        self.runs += 1;
        self.total += took;
        self.longest = self.longest.max(took);
        if self
            .reported
            .is_none_or(|t| t.elapsed() >= COST_REPORT_EVERY)
        {
            let mean = self.total / self.runs;
            tracing::info!(
                check,
                runs = self.runs,
                mean_ms = format!("{:.2}", mean.as_secs_f64() * 1e3),
                max_ms = format!("{:.2}", self.longest.as_secs_f64() * 1e3),
                "Check durations."
            );
            *self = RunCost {
                reported: Some(Instant::now()),
                ..RunCost::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::check::Check;
    use crate::check::tests::measured;
    use crate::heartbeat::HeartbeatBuilder;
    use crate::registry::{CheckRegistration, CheckSettings};
    use vaultmesh_proto::CheckStatus;

    #[derive(Debug)]
    enum Behaviour {
        Fine,
        Panics,
        /// Waits 10 ms, then panics: a panic on a later poll of the run, not the first.
        PanicsAfterWaiting,
        /// Counts its runs.
        Counts(Arc<AtomicUsize>),
        /// Takes this long, then is fine.
        Takes(Duration),
        /// Notes when each run starts; the first takes this long, the others nothing.
        SlowOnce(Arc<Mutex<Vec<tokio::time::Instant>>>, Duration),
        Hangs,
        /// Measures ([`measured`]) on even runs; hangs on run 1, panics on run 3.
        MeasuresThenFails(AtomicUsize),
        /// Hangs holding a value that panics when the cut-off run is dropped.
        HangsAndPanicsWhenDropped,
        /// Panics making its run, before there is a future to poll (`run` written by hand).
        PanicsMakingTheRun,
    }

    /// Panics when dropped (unless already unwinding).
    struct PanicsOnDrop;

    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("boom in drop");
            }
        }
    }

    impl Check for Behaviour {
        fn run<'a, 'b, 'f>(
            &'a self,
            ctx: &'b CheckContext,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = CheckOutcome> + Send + 'f>>
        where
            'a: 'f,
            'b: 'f,
        {
            if matches!(self, Behaviour::PanicsMakingTheRun) {
                panic!("boom making the run");
            }
            Box::pin(self.run_async(ctx))
        }
    }

    impl Behaviour {
        async fn run_async(&self, _ctx: &CheckContext) -> CheckOutcome {
            match self {
                Behaviour::PanicsMakingTheRun => unreachable!("panics before"),
                Behaviour::HangsAndPanicsWhenDropped => {
                    let _guard = PanicsOnDrop;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    CheckOutcome::new(CheckStatus::Ok, "never")
                }
                Behaviour::Fine => CheckOutcome::new(CheckStatus::Ok, "fine").with_metric("x", 1.0),
                Behaviour::Panics => panic!("boom in check"),
                Behaviour::PanicsAfterWaiting => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    panic!("boom after waiting")
                }
                Behaviour::SlowOnce(starts, took) => {
                    let first = {
                        let mut starts = starts.lock().unwrap();
                        starts.push(tokio::time::Instant::now());
                        starts.len() == 1
                    };
                    if first {
                        tokio::time::sleep(*took).await;
                    }
                    CheckOutcome::new(CheckStatus::Ok, "slow once")
                }
                Behaviour::Takes(took) => {
                    tokio::time::sleep(*took).await;
                    CheckOutcome::new(CheckStatus::Ok, "took its time")
                }
                Behaviour::Counts(runs) => {
                    runs.fetch_add(1, Ordering::Relaxed);
                    CheckOutcome::new(CheckStatus::Ok, "counted")
                }
                Behaviour::Hangs => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    CheckOutcome::new(CheckStatus::Ok, "never")
                }
                Behaviour::MeasuresThenFails(runs) => match runs.fetch_add(1, Ordering::Relaxed) {
                    1 => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        CheckOutcome::new(CheckStatus::Ok, "never")
                    }
                    3 => panic!("boom after measuring"),
                    _ => CheckOutcome::new(CheckStatus::Crit, "measured").contributing(measured()),
                },
            }
        }
    }

    static TEST_REG: CheckRegistration = CheckRegistration {
        name: "test",
        description: "test",
        enabled_by_default: true,
        default_interval: Duration::from_secs(1),
        default_timeout: Duration::from_secs(1),
        example: "",
        build: |_| Ok(Box::new(Behaviour::Fine)),
    };

    static OTHER_REG: CheckRegistration = CheckRegistration {
        name: "other",
        ..TEST_REG
    };

    static SLOW_REG: CheckRegistration = CheckRegistration {
        name: "slow",
        ..TEST_REG
    };

    fn configured(b: Behaviour, timeout: Duration) -> ConfiguredCheck {
        ConfiguredCheck {
            registration: &TEST_REG,
            settings: CheckSettings {
                enabled: true,
                interval: Duration::from_secs(1),
                timeout,
            },
            check: Arc::new(b),
        }
    }

    fn ctx() -> CheckContext {
        CheckContext::new(Uuid::nil(), "/")
    }

    #[tokio::test]
    async fn a_fine_check_reports_its_outcome() {
        let r = run_isolated(&configured(Behaviour::Fine, Duration::from_secs(1)), &ctx())
            .await
            .result;
        assert_eq!(
            (r.name.as_str(), r.status, r.summary.as_str()),
            ("test", CheckStatus::Ok, "fine")
        );
        assert_eq!(r.metrics["x"], 1.0);
    }

    #[tokio::test]
    async fn a_panicking_check_yields_unknown_with_the_message() {
        let r = run_isolated(
            &configured(Behaviour::Panics, Duration::from_secs(1)),
            &ctx(),
        )
        .await
        .result;
        assert_eq!(r.status, CheckStatus::Unknown);
        assert_eq!(r.summary, "check panicked: boom in check");
    }

    #[tokio::test]
    async fn a_check_that_panics_after_waiting_yields_unknown_and_the_next_run_goes_on() {
        let check = configured(Behaviour::PanicsAfterWaiting, Duration::from_secs(1));
        let r = run_isolated(&check, &ctx()).await.result;
        assert_eq!(
            (r.status, r.summary.as_str()),
            (CheckStatus::Unknown, "check panicked: boom after waiting")
        );
        let again = run_isolated(&check, &ctx()).await.result;
        assert_eq!(again.summary, "check panicked: boom after waiting");
    }

    #[tokio::test]
    async fn a_panic_in_the_drop_of_a_cut_off_run_or_in_making_one_yields_unknown() {
        let cut_off = configured(
            Behaviour::HangsAndPanicsWhenDropped,
            Duration::from_millis(20),
        );
        let r = run_isolated(&cut_off, &ctx()).await.result;
        assert_eq!(
            (r.status, r.summary.as_str()),
            (CheckStatus::Unknown, "check panicked: boom in drop")
        );
        let unmade = configured(Behaviour::PanicsMakingTheRun, Duration::from_secs(1));
        let r = run_isolated(&unmade, &ctx()).await.result;
        assert_eq!(
            (r.status, r.summary.as_str()),
            (CheckStatus::Unknown, "check panicked: boom making the run")
        );
        // And the agent goes on: the next run of a fine check is fine.
        let fine = configured(Behaviour::Fine, Duration::from_secs(1));
        assert_eq!(
            run_isolated(&fine, &ctx()).await.result.status,
            CheckStatus::Ok
        );
    }

    /// The loops start after `prime` ran every check: each check's next run is an interval
    /// (and its splay) later, not within the splay, and then one per interval.
    #[tokio::test(start_paused = true)]
    async fn the_first_scheduled_run_comes_an_interval_and_the_splay_after_the_start() {
        let runs = Arc::new(AtomicUsize::new(0));
        let s = Arc::new(Scheduler::new(
            vec![configured(
                Behaviour::Counts(Arc::clone(&runs)),
                Duration::from_millis(100),
            )],
            ctx(),
        ));
        let first = Duration::from_secs(1) + splay(Uuid::nil(), Duration::from_secs(1));
        let cancel = CancellationToken::new();
        let mut set = s.spawn(tokio::time::Instant::now(), cancel.clone());
        tokio::time::sleep(first - Duration::from_millis(1)).await;
        assert_eq!(
            runs.load(Ordering::Relaxed),
            0,
            "nothing within the first interval"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(runs.load(Ordering::Relaxed), 1, "the first run at its time");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::Relaxed), 2, "then one per interval");
        cancel.cancel();
        while set.join_next().await.is_some() {}
    }

    /// Review of issue 24's third pass: waiting a whole interval after the start always put a
    /// long check's second run (the scan's) up to two intervals after the start. A splay of a
    /// second or more is the first run's time, as it was.
    #[tokio::test(start_paused = true)]
    async fn a_long_interval_checks_first_scheduled_run_comes_at_its_splay() {
        let runs = Arc::new(AtomicUsize::new(0));
        let interval = Duration::from_secs(6 * 3600);
        let mut check = configured(
            Behaviour::Counts(Arc::clone(&runs)),
            Duration::from_millis(100),
        );
        check.settings.interval = interval;
        let first = splay(Uuid::nil(), interval);
        assert!(first >= FIRST_RUN_MIN_GAP, "this node's splay: {first:?}");
        let s = Arc::new(Scheduler::new(vec![check], ctx()));
        let cancel = CancellationToken::new();
        let mut set = s.spawn(tokio::time::Instant::now(), cancel.clone());
        tokio::time::sleep(first - Duration::from_millis(1)).await;
        assert_eq!(runs.load(Ordering::Relaxed), 0, "nothing before the splay");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(
            runs.load(Ordering::Relaxed),
            1,
            "the first run at the splay"
        );
        tokio::time::sleep(interval).await;
        assert_eq!(runs.load(Ordering::Relaxed), 2, "then one per interval");
        cancel.cancel();
        while set.join_next().await.is_some() {}
    }

    /// The heartbeat ticks at `first_run_at` of its interval and waits on `ran_since`: it goes
    /// once this tick's runs of the checks sharing its interval are done, waits for no check
    /// of another interval (here one that hangs), and stops waiting for one whose last run
    /// took longer than its patience.
    #[tokio::test(start_paused = true)]
    async fn ran_since_waits_for_this_ticks_runs_of_the_checks_sharing_the_interval() {
        let second = Duration::from_secs(1);
        let patience = Duration::from_millis(250);
        let mut hangs = configured(Behaviour::Hangs, Duration::from_secs(3600));
        hangs.registration = &OTHER_REG;
        hangs.settings.interval = Duration::from_secs(7);
        let mut slow = configured(Behaviour::Takes(Duration::from_millis(400)), second);
        slow.registration = &SLOW_REG;
        let s = Arc::new(Scheduler::new(
            vec![
                configured(Behaviour::Takes(Duration::from_millis(50)), second),
                slow,
                hangs,
            ],
            ctx(),
        ));
        let start = tokio::time::Instant::now();
        let cancel = CancellationToken::new();
        let mut set = s.spawn(start, cancel.clone());
        let tick = s.first_run_at(start, second);
        assert_eq!(tick, start + second + splay(Uuid::nil(), second));
        for (n, waited) in [(0, 400), (1, 50), (2, 50)] {
            let tick = tick + second * n;
            tokio::time::sleep_until(tick).await;
            s.ran_since(second, tick, patience).await;
            assert_eq!(
                tokio::time::Instant::now() - tick,
                Duration::from_millis(waited),
                "tick {n}: as this tick's runs finished (the slow check's too until it was slow)"
            );
            // A run of this tick satisfies it at once from now on.
            s.ran_since(second, tick, patience).await;
            assert_eq!(
                tokio::time::Instant::now() - tick,
                Duration::from_millis(waited)
            );
        }
        // No check runs every 30 s: nothing to wait for.
        let before = tokio::time::Instant::now();
        s.ran_since(
            Duration::from_secs(30),
            before + Duration::from_secs(30),
            patience,
        )
        .await;
        assert_eq!(tokio::time::Instant::now(), before);
        cancel.cancel();
        while set.join_next().await.is_some() {}
    }

    /// A run that outlasts its interval is followed at once by the run of the latest tick it
    /// missed; then the check is back on its interval's phase (its clock kept it).
    #[tokio::test(start_paused = true)]
    async fn a_run_longer_than_its_interval_is_followed_by_one_at_once_then_the_phase() {
        let second = Duration::from_secs(1);
        let starts = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::new(Scheduler::new(
            vec![configured(
                Behaviour::SlowOnce(Arc::clone(&starts), Duration::from_millis(1500)),
                Duration::from_secs(5),
            )],
            ctx(),
        ));
        let start = tokio::time::Instant::now();
        let cancel = CancellationToken::new();
        let mut set = s.spawn(start, cancel.clone());
        let tick = s.first_run_at(start, second);
        tokio::time::sleep_until(tick + Duration::from_millis(3500)).await;
        let ms: Vec<u128> = (starts.lock().unwrap().iter())
            .map(|t| (*t - tick).as_millis())
            .collect();
        assert_eq!(ms, [0, 1500, 2000, 3000]);
        cancel.cancel();
        while set.join_next().await.is_some() {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_times_out() {
        let r = run_isolated(
            &configured(Behaviour::Hangs, Duration::from_millis(500)),
            &ctx(),
        )
        .await
        .result;
        assert_eq!(r.status, CheckStatus::Unknown);
        assert_eq!(r.summary, "timed out after 500ms");
    }

    #[tokio::test(start_paused = true)]
    async fn loops_keep_running_after_failures() {
        let s = Arc::new(Scheduler::new(
            vec![configured(Behaviour::Panics, Duration::from_millis(100))],
            ctx(),
        ));
        let cancel = CancellationToken::new();
        let mut set = s.spawn(tokio::time::Instant::now(), cancel.clone());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let latest = s.latest();
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].result.status, CheckStatus::Unknown);
        cancel.cancel();
        while set.join_next().await.is_some() {}
    }

    /// A run that times out or panics replaces the check's earlier run whole: the heartbeat
    /// keeps no measurement of the earlier one, and the flags go back to their seed values.
    #[tokio::test(start_paused = true)]
    async fn a_run_that_times_out_or_panics_contributes_nothing_stale() {
        let s = Scheduler::new(
            vec![configured(
                Behaviour::MeasuresThenFails(AtomicUsize::new(0)),
                Duration::from_millis(500),
            )],
            ctx(),
        );
        let builder = HeartbeatBuilder::new(Uuid::nil(), "h".into(), "Generic".into(), "/".into());
        let seen = |s: &Scheduler| {
            let hb = builder.build(s.latest());
            let status = hb.checks[0].status;
            (status, hb.metrics, hb.services_ok, hb.cloudflare_ok)
        };
        let with_measurement = (CheckStatus::Crit, Some(measured().metrics), false, true);
        let seed_only = (CheckStatus::Unknown, None, true, false);
        for (run, why, want) in [
            (0, "measures", &with_measurement),
            (1, "times out", &seed_only),
            (2, "measures again", &with_measurement),
            (3, "panics", &seed_only),
        ] {
            s.run_all_once().await;
            assert_eq!(&seen(&s), want, "run {run}, which {why}");
        }
    }

    #[test]
    fn splay_is_deterministic_and_within_interval() {
        let id = Uuid::from_u128(42);
        let i = Duration::from_secs(30);
        assert_eq!(splay(id, i), splay(id, i));
        assert!(splay(id, i) < i);
        let spread: std::collections::BTreeSet<_> =
            (0..50u128).map(|n| splay(Uuid::from_u128(n), i)).collect();
        assert!(spread.len() > 40, "offsets should spread across nodes");
    }
}
