// SPDX-License-Identifier: Apache-2.0
//! Real uprobes on real processes (needs root: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN). Each test prints
//! `SKIP <test>: <reason>` when the machine cannot probe, and fails instead under
//! `LINKGUARD_REQUIRE_PRIVILEGED=1`.

mod support;

use std::path::{Path, PathBuf};

use linkguard_bpf::{AttachPoint, BpfError, LoadOptions, PidNamespace, Probes, Scope};
use support::{INT3, Target};

const HOT: u32 = 0;
const COLD: u32 = 1;
const NEVER: u32 = 2;

/// A private copy of the counted.c target plus the attach points of its three functions.
struct Counted {
    _dir: tempfile::TempDir,
    binary: PathBuf,
    hot: u64,
    cold: u64,
    never: u64,
}

impl Counted {
    #[expect(
        clippy::unwrap_used,
        reason = "test helper: a failed setup is a test failure"
    )]
    fn new() -> Self {
        let built = support::compile(&support::target_source("counted.c"), &[]);
        let dir = tempfile::tempdir().unwrap();
        let binary = support::private_copy(&built, dir.path());
        Self {
            hot: support::function_offset(&binary, "lg_hot"),
            cold: support::function_offset(&binary, "lg_cold"),
            never: support::function_offset(&binary, "lg_never"),
            binary,
            _dir: dir,
        }
    }

    fn points(&self) -> Vec<AttachPoint> {
        vec![
            AttachPoint {
                offset: self.hot,
                cookie: HOT,
            },
            AttachPoint {
                offset: self.cold,
                cookie: COLD,
            },
            AttachPoint {
                offset: self.never,
                cookie: NEVER,
            },
        ]
    }
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failed load is a test failure"
)]
fn load(max_probes: u32) -> Probes {
    Probes::load(&LoadOptions {
        max_probes,
        ..LoadOptions::default()
    })
    .unwrap()
}

#[test]
fn loads_with_every_option_combination() {
    if !support::privileged("loads_with_every_option_combination") {
        return;
    }
    let ns = PidNamespace::of_self().unwrap();
    for pid_namespace in [None, Some(ns)] {
        for first_seen_events in [false, true] {
            let opts = LoadOptions {
                max_probes: 4000,
                pid_namespace,
                first_seen_events,
                ..LoadOptions::default()
            };
            let probes = Probes::load(&opts).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
            assert_eq!(probes.read_all_counts().unwrap(), vec![0; 4000]);
        }
    }
}

#[test]
fn counts_one_million_calls_exactly() {
    if !support::privileged("counts_one_million_calls_exactly") {
        return;
    }
    let counted = Counted::new();
    let mut target = Target::spawn(&counted.binary);
    let mut probes = load(8);
    // The file opened the way the sidecar opens a container's binary: through the process.
    let exe = PathBuf::from(format!("/proc/{}/exe", target.pid));
    let _link = probes
        .attach(&exe, &counted.points(), Scope::AllProcesses)
        .unwrap();

    target.call_hot(1_000_000);
    target.command("c");
    assert_eq!(
        probes.read_counts(&[HOT, COLD, NEVER]).unwrap(),
        vec![1_000_000, 1, 0]
    );
    assert_eq!(
        probes.read_all_counts().unwrap(),
        vec![1_000_000, 1, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        support::text_byte(target.pid, &counted.binary, counted.hot),
        INT3
    );
    target.finish();
}

#[test]
fn counts_multithreaded_calls_exactly() {
    if !support::privileged("counts_multithreaded_calls_exactly") {
        return;
    }
    let counted = Counted::new();
    let mut target = Target::spawn(&counted.binary);
    let mut probes = load(3);
    // One process, all its threads: the kernel's uprobe.multi pid filter is per thread group.
    let _link = probes
        .attach(
            &counted.binary,
            &counted.points(),
            Scope::OneProcess(target.pid),
        )
        .unwrap();

    target.command("t 4 250000");
    assert_eq!(
        probes.read_counts(&[HOT, COLD, NEVER]).unwrap(),
        vec![1_000_000, 0, 0]
    );
    target.finish();
}

#[test]
fn one_process_scope_ignores_another_process_of_the_same_binary() {
    if !support::privileged("one_process_scope_ignores_another_process_of_the_same_binary") {
        return;
    }
    let counted = Counted::new();
    let mut scoped = Target::spawn(&counted.binary);
    let mut other = Target::spawn(&counted.binary);
    let mut probes = load(3);
    let _link = probes
        .attach(
            &counted.binary,
            &counted.points(),
            Scope::OneProcess(scoped.pid),
        )
        .unwrap();

    other.call_hot(5_000);
    scoped.call_hot(1_000);
    other.command("c");
    assert_eq!(probes.read_counts(&[HOT, COLD]).unwrap(), vec![1_000, 0]);
    // The breakpoint exists only in the scoped process's text; the other one runs the original code.
    assert_eq!(
        support::text_byte(scoped.pid, &counted.binary, counted.hot),
        INT3
    );
    assert_eq!(
        support::text_byte(other.pid, &counted.binary, counted.hot),
        support::file_byte(&counted.binary, counted.hot)
    );
    scoped.finish();
    other.finish();
}

/// Where `pid` maps libcrypto, as a path that opens the same inode from here.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failed setup is a test failure"
)]
fn libcrypto_of(pid: u32) -> PathBuf {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let path = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libcrypto.so"))
        })
        .unwrap_or_else(|| panic!("libcrypto is not mapped in {pid}"));
    // Through the process's root, as the sidecar must for another mount namespace.
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

#[test]
fn library_function_scoped_to_one_process_while_another_calls_it() {
    if !support::privileged("library_function_scoped_to_one_process_while_another_calls_it") {
        return;
    }
    let binary = support::compile(&support::target_source("crypto.c"), &["-l:libcrypto.so.3"]);
    let mut scoped = Target::spawn(&binary);
    let mut other = Target::spawn(&binary);
    let library = libcrypto_of(scoped.pid);
    let sha256 = support::function_offset(&library, "SHA256");
    let mut probes = load(1);
    let _link = probes
        .attach(
            &library,
            &[AttachPoint {
                offset: sha256,
                cookie: 0,
            }],
            Scope::OneProcess(scoped.pid),
        )
        .unwrap();

    // Interleave so both processes call SHA256 while the link exists.
    for _ in 0..3 {
        other.command("s 2000");
        scoped.command("s 1000");
    }
    assert_eq!(probes.read_counts(&[0]).unwrap(), vec![3_000]);
    assert_eq!(support::text_byte(scoped.pid, &library, sha256), INT3);
    assert_ne!(support::text_byte(other.pid, &library, sha256), INT3);
    scoped.finish();
    other.finish();
}

#[test]
fn pid_namespace_filter_counts_only_that_namespace() {
    if !support::privileged("pid_namespace_filter_counts_only_that_namespace") {
        return;
    }
    let counted = Counted::new();
    let mut inside = Target::spawn_in_new_pid_namespace(&counted.binary);
    let mut outside = Target::spawn(&counted.binary);
    assert_eq!(
        inside.own_pid, 1,
        "the namespaced target should be pid 1 of its namespace"
    );
    let namespace = PidNamespace::of_process(inside.pid).unwrap();
    assert_ne!(namespace, PidNamespace::of_process(outside.pid).unwrap());

    let mut probes = Probes::load(&LoadOptions {
        max_probes: 3,
        pid_namespace: Some(namespace),
        first_seen_events: true,
        ..LoadOptions::default()
    })
    .unwrap();
    let _link = probes
        .attach(&counted.binary, &counted.points(), Scope::AllProcesses)
        .unwrap();

    outside.call_hot(3_000);
    inside.call_hot(2_000);
    outside.command("c");
    assert_eq!(probes.read_counts(&[HOT, COLD]).unwrap(), vec![2_000, 0]);
    // The outside process still took its traps (a uprobe is per inode); they were filtered, not counted.
    assert_eq!(probes.stats().unwrap().filtered, 3_001);
    let events = probes.drain_first_seen(16);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].cookie, events[0].pid, events[0].tid),
        (HOT, 1, 1),
        "pid as seen in the namespace"
    );
    assert_eq!(events[0].host_pid, inside.pid);
    inside.finish();
    outside.finish();
}

#[test]
fn first_seen_reports_each_cookie_once_until_reset() {
    if !support::privileged("first_seen_reports_each_cookie_once_until_reset") {
        return;
    }
    let counted = Counted::new();
    let mut target = Target::spawn(&counted.binary);
    let mut probes = Probes::load(&LoadOptions {
        max_probes: 3,
        first_seen_events: true,
        wakeup_every: 2,
        ..LoadOptions::default()
    })
    .unwrap();
    assert!(probes.first_seen_fd().is_some());
    let _link = probes
        .attach(
            &counted.binary,
            &counted.points(),
            Scope::OneProcess(target.pid),
        )
        .unwrap();

    let before = support::monotonic_ns();
    target.call_hot(100);
    target.command("c");
    target.call_hot(100);
    let after = support::monotonic_ns();
    let events = probes.drain_first_seen(16);
    let cookies: Vec<u32> = events.iter().map(|e| e.cookie).collect();
    assert_eq!(cookies, vec![HOT, COLD], "{events:?}");
    for event in &events {
        assert_eq!((event.pid, event.host_pid), (target.pid, target.pid));
        assert!(
            (before..=after).contains(&event.ktime_ns),
            "{event:?} not in {before}..={after}"
        );
    }
    assert!(probes.drain_first_seen(16).is_empty());

    probes.reset_first_seen(&[HOT]).unwrap();
    target.call_hot(10);
    target.command("c");
    let again: Vec<u32> = probes
        .drain_first_seen(16)
        .iter()
        .map(|e| e.cookie)
        .collect();
    assert_eq!(again, vec![HOT]);
    let stats = probes.stats().unwrap();
    assert_eq!(
        (stats.events_sent, stats.events_dropped, stats.filtered),
        (3, 0, 0)
    );
    assert_eq!(probes.read_counts(&[HOT, COLD]).unwrap(), vec![210, 2]);
    target.finish();
}

#[test]
fn take_counts_returns_increments_and_restarts_from_zero() {
    if !support::privileged("take_counts_returns_increments_and_restarts_from_zero") {
        return;
    }
    let counted = Counted::new();
    let mut target = Target::spawn(&counted.binary);
    let mut probes = load(3);
    let _link = probes
        .attach(
            &counted.binary,
            &counted.points(),
            Scope::OneProcess(target.pid),
        )
        .unwrap();

    target.call_hot(500);
    target.command("c");
    assert_eq!(probes.take_counts(&[HOT]).unwrap(), vec![500]);
    assert_eq!(
        probes.read_counts(&[HOT, COLD]).unwrap(),
        vec![0, 1],
        "only the taken cookie restarts"
    );
    target.call_hot(200);
    assert_eq!(probes.read_counts(&[HOT]).unwrap(), vec![200]);
    assert_eq!(probes.take_all_counts().unwrap(), vec![200, 1, 0]);
    assert_eq!(probes.read_all_counts().unwrap(), vec![0, 0, 0]);
    target.finish();
}

#[test]
fn detach_stops_counting_and_removes_the_breakpoint() {
    if !support::privileged("detach_stops_counting_and_removes_the_breakpoint") {
        return;
    }
    let counted = Counted::new();
    let mut target = Target::spawn(&counted.binary);
    let mut probes = load(3);
    let link = probes
        .attach(&counted.binary, &counted.points(), Scope::AllProcesses)
        .unwrap();
    target.call_hot(100);
    assert_eq!(
        support::text_byte(target.pid, &counted.binary, counted.hot),
        INT3
    );

    probes.detach(link).unwrap();
    target.call_hot(100);
    target.command("c");
    assert_eq!(probes.read_counts(&[HOT, COLD]).unwrap(), vec![100, 0]);
    assert_eq!(
        support::text_byte(target.pid, &counted.binary, counted.hot),
        support::file_byte(&counted.binary, counted.hot)
    );
    target.finish();
}

#[test]
fn relink_without_a_seen_function_stops_trapping_it() {
    if !support::privileged("relink_without_a_seen_function_stops_trapping_it") {
        return;
    }
    let counted = Counted::new();
    let mut target = Target::spawn(&counted.binary);
    let mut probes = load(3);
    let link = probes
        .attach(
            &counted.binary,
            &counted.points(),
            Scope::OneProcess(target.pid),
        )
        .unwrap();
    target.call_hot(100);
    target.command("c");

    let link = probes.relink_without(link, &[HOT]).unwrap().unwrap();
    assert_eq!(
        link.points().iter().map(|p| p.cookie).collect::<Vec<_>>(),
        vec![COLD, NEVER]
    );
    target.call_hot(1_000);
    target.command("c");
    // hot no longer traps (count constant, original byte back); cold still does.
    assert_eq!(probes.read_counts(&[HOT, COLD]).unwrap(), vec![100, 2]);
    assert_eq!(
        support::text_byte(target.pid, &counted.binary, counted.hot),
        support::file_byte(&counted.binary, counted.hot)
    );
    assert_eq!(
        support::text_byte(target.pid, &counted.binary, counted.cold),
        INT3
    );

    // Removing nothing keeps the link; removing the rest leaves no link.
    let link = probes.relink_without(link, &[HOT]).unwrap().unwrap();
    assert!(
        probes
            .relink_without(link, &[COLD, NEVER])
            .unwrap()
            .is_none()
    );
    target.command("c");
    assert_eq!(probes.read_counts(&[COLD]).unwrap(), vec![2]);
    target.finish();
}

#[test]
fn invalid_targets_offsets_and_cookies_are_clear_errors() {
    if !support::privileged("invalid_targets_offsets_and_cookies_are_clear_errors") {
        return;
    }
    let counted = Counted::new();
    let mut probes = load(3);
    let points = counted.points();
    let size = std::fs::metadata(&counted.binary).unwrap().len();

    let missing = Path::new("/nonexistent/linkguard/app");
    let err = probes
        .attach(missing, &points, Scope::AllProcesses)
        .unwrap_err();
    assert!(matches!(err, BpfError::TargetUnreadable { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/linkguard/app")
            && err.to_string().contains("/proc/<pid>/root")
    );

    let err = probes
        .attach(Path::new("/tmp"), &points, Scope::AllProcesses)
        .unwrap_err();
    assert!(
        matches!(err, BpfError::TargetNotRegularFile { .. }),
        "{err:?}"
    );

    let err = probes
        .attach(Path::new("relative/app"), &points, Scope::AllProcesses)
        .unwrap_err();
    assert!(matches!(err, BpfError::TargetNotAbsolute { .. }), "{err:?}");

    let err = probes
        .attach(&counted.binary, &[], Scope::AllProcesses)
        .unwrap_err();
    assert!(matches!(err, BpfError::NoAttachPoints { .. }), "{err:?}");

    let beyond = [AttachPoint {
        offset: size + 0x1000,
        cookie: 0,
    }];
    let err = probes
        .attach(&counted.binary, &beyond, Scope::AllProcesses)
        .unwrap_err();
    assert!(
        matches!(err, BpfError::OffsetBeyondFile { offset, .. } if offset == size + 0x1000),
        "{err:?}"
    );
    assert!(err.to_string().contains("stale"), "{err}");

    let out_of_range = [AttachPoint {
        offset: counted.hot,
        cookie: 3,
    }];
    let err = probes
        .attach(&counted.binary, &out_of_range, Scope::AllProcesses)
        .unwrap_err();
    assert!(
        matches!(
            err,
            BpfError::CookieOutOfRange {
                cookie: 3,
                max_probes: 3
            }
        ),
        "{err:?}"
    );

    let duplicate = [
        AttachPoint {
            offset: counted.hot,
            cookie: 0,
        },
        AttachPoint {
            offset: counted.hot,
            cookie: 1,
        },
    ];
    let err = probes
        .attach(&counted.binary, &duplicate, Scope::AllProcesses)
        .unwrap_err();
    assert!(
        matches!(
            err,
            BpfError::DuplicateOffset {
                first_cookie: 0,
                second_cookie: 1,
                ..
            }
        ),
        "{err:?}"
    );

    let err = probes
        .attach(&counted.binary, &points, Scope::OneProcess(0))
        .unwrap_err();
    assert!(matches!(err, BpfError::InvalidPid), "{err:?}");

    // A pid that cannot exist (above pid_max): the kernel answers ESRCH, reported with the file and a hint.
    let err = probes
        .attach(&counted.binary, &points, Scope::OneProcess(u32::MAX / 2))
        .unwrap_err();
    match &err {
        BpfError::AttachFailed {
            path,
            points: 3,
            errno: Some(libc::ESRCH),
            hint,
            ..
        } => {
            assert_eq!(path, &counted.binary);
            assert!(hint.contains("no such process"), "{hint}");
        }
        other => panic!("unexpected error: {other:?}"),
    }

    assert!(matches!(
        probes.read_counts(&[7]).unwrap_err(),
        BpfError::CookieOutOfRange { cookie: 7, .. }
    ));
    assert!(matches!(
        probes.reset_first_seen(&[3]).unwrap_err(),
        BpfError::CookieOutOfRange { .. }
    ));
    // Nothing was attached by the failed calls; the probes are still usable.
    let link = probes
        .attach(&counted.binary, &points, Scope::AllProcesses)
        .unwrap();
    probes.detach(link).unwrap();
}

#[test]
fn relink_all_and_detach_all_handle_several_links_at_once() {
    if !support::privileged("relink_all_and_detach_all_handle_several_links_at_once") {
        return;
    }
    let counted = Counted::new();
    let mut target = Target::spawn(&counted.binary);
    let mut probes = load(3);
    let scope = Scope::OneProcess(target.pid);
    let hot_link = probes
        .attach(
            &counted.binary,
            &[AttachPoint {
                offset: counted.hot,
                cookie: HOT,
            }],
            scope,
        )
        .unwrap();
    let other_link = probes
        .attach(
            &counted.binary,
            &[
                AttachPoint {
                    offset: counted.cold,
                    cookie: COLD,
                },
                AttachPoint {
                    offset: counted.never,
                    cookie: NEVER,
                },
            ],
            scope,
        )
        .unwrap();
    target.call_hot(10);
    target.command("c");

    // hot's link is emptied (dropped), the other one loses `never` and is re-attached with `cold` only.
    let (links, errors) = probes.relink_all_without(vec![hot_link, other_link], &[HOT, NEVER]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(links.len(), 1);
    assert_eq!(
        links[0].points(),
        &[AttachPoint {
            offset: counted.cold,
            cookie: COLD
        }]
    );
    target.call_hot(10);
    target.command("c");
    assert_eq!(probes.read_counts(&[HOT, COLD]).unwrap(), vec![10, 2]);
    assert_ne!(
        support::text_byte(target.pid, &counted.binary, counted.hot),
        INT3
    );
    assert_ne!(
        support::text_byte(target.pid, &counted.binary, counted.never),
        INT3
    );

    let again = probes
        .attach(
            &counted.binary,
            &[AttachPoint {
                offset: counted.hot,
                cookie: HOT,
            }],
            scope,
        )
        .unwrap();
    probes
        .detach_all(links.into_iter().chain([again]).collect())
        .unwrap();
    target.call_hot(10);
    target.command("c");
    assert_eq!(
        probes.read_counts(&[HOT, COLD]).unwrap(),
        vec![10, 2],
        "nothing counts after detach_all"
    );
    assert_ne!(
        support::text_byte(target.pid, &counted.binary, counted.cold),
        INT3
    );
    target.finish();
}

#[test]
fn mount_namespace_target_is_counted_through_its_root_not_the_host_path() {
    if !support::privileged("mount_namespace_target_is_counted_through_its_root_not_the_host_path")
    {
        return;
    }
    let inside = Counted::new();
    let host = Counted::new(); // same content, another inode, at the path the container uses
    let mut target = Target::spawn_in_new_mount_namespace(&inside.binary, &host.binary);
    let through_root = PathBuf::from(format!(
        "/proc/{}/root{}",
        target.pid,
        host.binary.display()
    ));
    let mut probes = load(6);
    let via_root = probes
        .attach(&through_root, &inside.points(), Scope::AllProcesses)
        .unwrap();
    let host_points: Vec<AttachPoint> = host
        .points()
        .into_iter()
        .map(|p| AttachPoint {
            cookie: p.cookie + 3,
            ..p
        })
        .collect();
    let via_host_path = probes
        .attach(&host.binary, &host_points, Scope::AllProcesses)
        .unwrap();

    target.call_hot(1_000);
    // Through /proc/<pid>/root: counted. Through the same path in our own mount namespace: another inode,
    // attached without error and silently 0 - the pitfall the API documents.
    assert_eq!(probes.read_counts(&[HOT, HOT + 3]).unwrap(), vec![1_000, 0]);
    assert_eq!(
        support::text_byte(target.pid, &through_root, inside.hot),
        INT3
    );
    assert_eq!(
        support::file_byte(&host.binary, host.hot),
        support::file_byte(&inside.binary, inside.hot)
    );
    probes.detach_all(vec![via_root, via_host_path]).unwrap();
    target.finish();
}

#[test]
fn take_counts_while_the_target_runs_loses_and_duplicates_nothing() {
    if !support::privileged("take_counts_while_the_target_runs_loses_and_duplicates_nothing") {
        return;
    }
    let counted = Counted::new();
    let mut target = Target::spawn(&counted.binary);
    let mut probes = load(3);
    let _link = probes
        .attach(
            &counted.binary,
            &counted.points(),
            Scope::OneProcess(target.pid),
        )
        .unwrap();

    // Two threads call while this thread keeps taking: every call must land in exactly one take.
    target.send("t 2 150000");
    let deadline = std::time::Instant::now() + support::REPLY_TIMEOUT;
    let (mut sum, mut nonzero_takes) = (0u64, 0usize);
    let reply = loop {
        let taken = probes.take_counts(&[HOT]).unwrap()[0];
        sum += taken;
        nonzero_takes += usize::from(taken > 0);
        if let Some(reply) = target.try_reply() {
            break reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "target did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    assert_eq!(reply, "ok");
    sum += probes.take_counts(&[HOT]).unwrap()[0];
    assert_eq!(sum, 300_000);
    assert!(
        nonzero_takes > 10,
        "takes did not overlap the calls ({nonzero_takes} non-zero takes)"
    );
    target.finish();
}
