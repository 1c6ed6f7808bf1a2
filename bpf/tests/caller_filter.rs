// SPDX-License-Identifier: Apache-2.0
//! External-callers-only points on real processes (needs root, like privileged.rs): a library function
//! called from the program is counted, the same function called by its own library is not (only tallied),
//! in every process wherever the library is mapped; a second copy of the library (dlmopen) is another
//! object; and coverage mode's internal-call budget. The target is tests/targets/callers.c with its library
//! tests/targets/callee_lib.c.

mod support;

use std::path::{Path, PathBuf};

use linkguard_bpf::{AttachPoint, FirstSeen, LoadOptions, Probes, Scope};
use support::Target;

const F: u32 = 0;
const G: u32 = 1;

/// A private build of the target and its library, with the offsets of the library's functions.
struct Callers {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    lib: PathBuf,
    f: u64,
    g: u64,
}

impl Callers {
    fn build() -> Self {
        Self::build_with(&[])
    }

    /// Built with these extra link flags for the program.
    #[expect(
        clippy::unwrap_used,
        reason = "test helper: a failed setup is a test failure"
    )]
    fn build_with(program_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (exe, lib) = support::compile_with_library(
            &support::target_source("callers.c"),
            &support::target_source("callee_lib.c"),
            "liblgcallee.so",
            dir.path(),
            program_args,
        );
        Self {
            f: support::function_offset(&lib, "lg_lib_f"),
            g: support::function_offset(&lib, "lg_lib_g"),
            exe,
            lib,
            _dir: dir,
        }
    }

    /// The library as the sidecar opens a container's file: through the process's root.
    fn lib_of(&self, pid: u32) -> PathBuf {
        Path::new(&format!("/proc/{pid}/root"))
            .join(self.lib.strip_prefix("/").unwrap_or(&self.lib))
    }
}

/// Loads the program; `None` (after printing SKIP, or panicking under LINKGUARD_REQUIRE_PRIVILEGED=1) when
/// this machine cannot probe or the caller check is not implemented for its architecture.
#[expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helper: a failed load is a test failure"
)]
fn load(test: &str, opts: LoadOptions) -> Option<Probes> {
    if !support::privileged(test) {
        return None;
    }
    let probes = Probes::load(&opts).unwrap();
    if !probes.filters_internal_calls() {
        let reason = "the caller check is implemented for x86-64 only";
        if std::env::var_os("LINKGUARD_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
            panic!("{test}: LINKGUARD_REQUIRE_PRIVILEGED=1 but {reason}");
        }
        eprintln!("SKIP {test}: {reason}");
        return None;
    }
    Some(probes)
}

fn options(max_probes: u32) -> LoadOptions {
    LoadOptions {
        max_probes,
        ..LoadOptions::default()
    }
}

#[test]
fn a_library_calling_its_own_function_is_not_counted_by_an_external_callers_only_point() {
    let test =
        "a_library_calling_its_own_function_is_not_counted_by_an_external_callers_only_point";
    let Some(mut filtered) = load(test, options(4)) else {
        return;
    };
    let callers = Callers::build();
    let mut target = Target::spawn(&callers.exe);
    let lib = callers.lib_of(target.pid);
    let _link = filtered
        .attach(
            &lib,
            &[
                AttachPoint::external_callers_only(callers.f, F),
                AttachPoint {
                    offset: callers.g,
                    cookie: G,
                },
            ],
            Scope::OneProcess(target.pid),
        )
        .unwrap();
    // The same function without the flag, by a second program: every call counts.
    let mut plain = Probes::load(&options(4)).unwrap();
    let _plain_link = plain
        .attach(
            &lib,
            &[AttachPoint {
                offset: callers.f,
                cookie: F,
            }],
            Scope::OneProcess(target.pid),
        )
        .unwrap();

    target.command("e 1000"); // the program calls lg_lib_f: external
    target.command("i 700"); // lg_lib_g calls lg_lib_f inside the library: internal
    // A second copy of the library (dlmopen: another mapping of the same file) called from the first
    // copy's code: another object as far as the check goes (documented), so counted.
    target.command("m 300");
    // lg_lib_h jumps to lg_lib_f (a tail call), so the program's return address is on the stack: the
    // program called lg_lib_h (through its PLT, then through its GOT), not lg_lib_f. Internal.
    target.command("t 400");
    target.command("T 200");
    // The program calling lg_lib_f through its GOT (-fno-plt style): external.
    target.command("G 100");
    assert_eq!(
        filtered.read_counts(&[F, G]).unwrap(),
        [1400, 1],
        "the program's and the other copy's calls of lg_lib_f count, not the library's own; lg_lib_g \
         (unflagged) was called once, by the program"
    );
    assert_eq!(
        filtered
            .read_counts(&[F | AttachPoint::EXTERNAL_CALLERS_ONLY])
            .unwrap(),
        [1400],
        "the flag is ignored when reading"
    );
    assert_eq!(plain.read_counts(&[F]).unwrap(), [2700]);
    let stats = filtered.stats().unwrap();
    assert_eq!(
        (stats.internal_calls, stats.caller_unknown, stats.bad_cookie),
        (700 + 400 + 200, 0, 0),
        "{stats:?}"
    );
    assert_eq!(plain.stats().unwrap().internal_calls, 0);
    target.finish();
}

#[test]
fn a_tail_call_through_an_ibt_plt_is_internal_too() {
    let test = "a_tail_call_through_an_ibt_plt_is_internal_too";
    let Some(mut probes) = load(test, options(1)) else {
        return;
    };
    // -z ibtplt: the program's PLT stubs start with endbr64 (.plt.sec), as on CET-enabled distributions.
    let callers = Callers::build_with(&["-Wl,-z,ibtplt"]);
    let mut target = Target::spawn(&callers.exe);
    let _link = probes
        .attach(
            &callers.lib_of(target.pid),
            &[AttachPoint::external_callers_only(callers.f, F)],
            Scope::OneProcess(target.pid),
        )
        .unwrap();
    target.command("t 50");
    target.command("e 20");
    assert_eq!(probes.read_counts(&[F]).unwrap(), [20]);
    assert_eq!(probes.stats().unwrap().internal_calls, 50);
    target.finish();
}

#[test]
fn internal_calls_are_recognised_in_every_process_wherever_the_library_is_mapped() {
    let test = "internal_calls_are_recognised_in_every_process_wherever_the_library_is_mapped";
    let Some(mut probes) = load(test, options(2)) else {
        return;
    };
    let callers = Callers::build();
    let mut first = Target::spawn(&callers.exe);
    let mut second = Target::spawn(&callers.exe);
    let (at_first, at_second) = (
        support::exec_mappings(first.pid, &callers.lib),
        support::exec_mappings(second.pid, &callers.lib),
    );
    assert_eq!((at_first.len(), at_second.len()), (1, 1));
    assert_ne!(
        at_first, at_second,
        "address space randomisation maps the library at different addresses"
    );
    // One link for every process mapping the file (its own inode: no other test fires it).
    let _link = probes
        .attach(
            &callers.lib,
            &[AttachPoint::external_callers_only(callers.f, F)],
            Scope::AllProcesses,
        )
        .unwrap();
    first.command("e 300");
    second.command("i 500");
    first.command("i 200");
    second.command("e 40");
    assert_eq!(probes.read_counts(&[F]).unwrap(), [340]);
    let stats = probes.stats().unwrap();
    assert_eq!((stats.internal_calls, stats.caller_unknown), (700, 0));
    first.finish();
    second.finish();
}

#[test]
fn coverage_mode_reports_a_function_at_its_internal_call_budget_once_per_window() {
    let test = "coverage_mode_reports_a_function_at_its_internal_call_budget_once_per_window";
    let opts = LoadOptions {
        first_seen_events: true,
        internal_call_budget: 10,
        ..options(2)
    };
    let Some(mut probes) = load(test, opts) else {
        return;
    };
    let callers = Callers::build();
    let mut target = Target::spawn(&callers.exe);
    let _link = probes
        .attach(
            &callers.lib_of(target.pid),
            &[
                AttachPoint::external_callers_only(callers.f, F),
                AttachPoint {
                    offset: callers.g,
                    cookie: G,
                },
            ],
            Scope::OneProcess(target.pid),
        )
        .unwrap();
    let events = |probes: &mut Probes| -> Vec<(u32, bool)> {
        probes
            .drain_first_seen(100)
            .iter()
            .map(|e: &FirstSeen| (e.cookie, e.internal_budget_reached))
            .collect()
    };

    target.command("i 9");
    assert_eq!(
        events(&mut probes),
        [(G, false)],
        "9 internal calls: below the budget"
    );
    target.command("i 1");
    let reached = probes.drain_first_seen(100);
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert_eq!(
        (
            reached[0].cookie,
            reached[0].internal_budget_reached,
            reached[0].pid
        ),
        (F, true, target.pid)
    );
    target.command("i 100");
    assert_eq!(events(&mut probes), [], "reported once per window");
    target.command("e 5");
    assert_eq!(events(&mut probes), [], "already reported in this window");
    assert_eq!(probes.read_counts(&[F]).unwrap(), [5]);

    // A new window: the first call from outside is reported as a counted call.
    probes
        .reset_first_seen(&[F | AttachPoint::EXTERNAL_CALLERS_ONLY])
        .unwrap();
    target.command("e 1");
    assert_eq!(events(&mut probes), [(F, false)]);
    // And the next window's budget starts from zero again.
    probes.reset_first_seen(&[F]).unwrap();
    target.command("i 9");
    assert_eq!(events(&mut probes), []);
    target.command("i 1");
    assert_eq!(events(&mut probes), [(F, true)]);

    let stats = probes.stats().unwrap();
    assert_eq!(
        (
            stats.internal_calls,
            stats.internal_budget_reached,
            stats.caller_unknown
        ),
        (9 + 1 + 100 + 9 + 1, 2, 0),
        "{stats:?}"
    );
    target.finish();
}

#[test]
fn without_a_budget_internal_calls_never_stop_the_trapping() {
    let test = "without_a_budget_internal_calls_never_stop_the_trapping";
    let opts = LoadOptions {
        first_seen_events: true,
        internal_call_budget: 0,
        ..options(1)
    };
    let Some(mut probes) = load(test, opts) else {
        return;
    };
    let callers = Callers::build();
    let mut target = Target::spawn(&callers.exe);
    let _link = probes
        .attach(
            &callers.lib_of(target.pid),
            &[AttachPoint::external_callers_only(callers.f, F)],
            Scope::OneProcess(target.pid),
        )
        .unwrap();
    target.command("i 2000");
    assert!(probes.drain_first_seen(100).is_empty());
    target.command("e 1");
    let seen = probes.drain_first_seen(100);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!seen[0].internal_budget_reached);
    assert_eq!(probes.read_counts(&[F]).unwrap(), [1]);
    assert_eq!(probes.stats().unwrap().internal_calls, 2000);
    target.finish();
}
