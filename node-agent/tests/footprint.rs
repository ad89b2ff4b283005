//! What the agent keeps resident under its shipped unit (`systemd/vaultmesh-node-agent.service`):
//! the unit's `GLIBC_TUNABLES` keeps every thread on glibc's one main malloc arena, where each
//! thread that allocates would otherwise get a heap of its own (docs/PERFORMANCE.md#agent).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use vaultmesh_testkit::fake_cc::FakeCommandCenter;
use vaultmesh_testkit::{NodeAgent, agent_unit_env, wait_for};

/// glibc's `HEAP_MAX_SIZE` on 64-bit: a thread arena is one reservation of this size, aligned to
/// it, whose used start is read-write and whose rest is `PROT_NONE`.
const ARENA_RESERVATION: u64 = 64 << 20;

/// The glibc thread arenas in `/proc/PID/maps`: an anonymous read-write mapping that starts on
/// a 64 MiB boundary, followed by the inaccessible rest of the same 64 MiB (thread stacks are
/// the other way round: the guard page below the stack).
fn thread_arenas(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let parsed: Vec<(u64, u64, &str, bool, &str)> = maps
        .lines()
        .map(|line| {
            let mut f = line.split_whitespace();
            let (range, perms) = (f.next().unwrap(), f.next().unwrap());
            let inode = f.nth(2).unwrap();
            let (start, end) = range.split_once('-').unwrap();
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
            let anonymous = inode == "0" && f.next().is_none();
            (hex(start), hex(end), perms, anonymous, line)
        })
        .collect();
    parsed
        .windows(2)
        .filter(|w| {
            let ((start, end, perms, anon, _), (next_start, next_end, next_perms, next_anon, _)) =
                (w[0], w[1]);
            anon && next_anon
                && perms == "rw-p"
                && next_perms == "---p"
                && start % ARENA_RESERVATION == 0
                && next_start == end
                && next_end == start + ARENA_RESERVATION
        })
        .map(|w| w[0].4.to_string())
        .collect()
}

/// The agent with every check due each second (the disk check's `statvfs` and the start-up
/// scan run on tokio's blocking threads), run until it has sent three heartbeats; its thread
/// arenas then.
fn arenas_after_three_heartbeats(glibc_tunables: Option<&str>) -> Vec<String> {
    let fake = FakeCommandCenter::start();
    let agent = NodeAgent::new(&fake.url)
        .config(
            "[agent]\ninterval = \"1s\"\n\n[checks.disk]\ninterval = \"1s\"\n\n\
             [checks.memory]\ninterval = \"1s\"\n\n[checks.sovereign_scan]\nenabled = true\n",
        )
        .env("RUST_LOG", "warn");
    // Empty (glibc's defaults) rather than whatever the test runner's environment holds.
    let agent = agent.env("GLIBC_TUNABLES", glibc_tunables.unwrap_or(""));
    let mut child = agent.spawn(&["run"]);
    wait_for(Duration::from_secs(30), || {
        (fake.requests().0 >= 3).then_some(())
    })
    .expect("three heartbeats");
    assert!(child.0.try_wait().unwrap().is_none(), "the agent runs");
    thread_arenas(child.0.id())
}

/// The unit sets `glibc.malloc.arena_max=1`, and under it the agent's threads share the main
/// heap: no thread arena. Without it (the control, so the detection is known to work) the same
/// agent has one or more.
#[test]
fn under_the_units_environment_every_thread_allocates_from_the_main_heap() {
    let tunables = agent_unit_env("GLIBC_TUNABLES")
        .expect("the agent unit sets Environment=GLIBC_TUNABLES=...");
    assert!(
        tunables.split(':').any(|t| t == "glibc.malloc.arena_max=1"),
        "GLIBC_TUNABLES={tunables}: expected glibc.malloc.arena_max=1"
    );
    let with = arenas_after_three_heartbeats(Some(&tunables));
    assert!(
        with.is_empty(),
        "with GLIBC_TUNABLES={tunables} the agent still has thread arenas:\n{}",
        with.join("\n")
    );
    let without = arenas_after_three_heartbeats(None);
    assert!(
        !without.is_empty(),
        "without the tunable the agent showed no thread arena: the detection is broken"
    );
}
