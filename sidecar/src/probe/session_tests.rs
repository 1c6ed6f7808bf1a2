// SPDX-License-Identifier: Apache-2.0
//! Session logic against the in-memory backend: attribution, modes, mismatches, exits and failures.

use std::path::PathBuf;

use chrono::{TimeZone as _, Utc};

use super::*;
use crate::observation::RecordBody;
use crate::probe::fake::FakeKernel;
use crate::probe::resolve::{PlannedPoint, SymbolFailure};
use crate::probe::targets::tests::sample_map;

const SSL: &str = "/usr/lib/libssl.so.3";
const APP: &str = "/usr/bin/app";
const PID: u32 = 4242;

fn interval() -> Interval {
    Interval {
        start: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 10).unwrap(),
    }
}

fn session(mode: Mode, max_probes: u32) -> Session<FakeKernel> {
    let targets = Targets::from_map(&sample_map(), mode == Mode::Coverage);
    Session::new(
        FakeKernel::new(max_probes),
        Arc::new(targets),
        mode,
        Origin::default(),
        1000,
    )
}

fn process(pid: u32) -> ProcessRef {
    ProcessRef {
        pid,
        ns_pid: pid - 4000,
        start_time: 1,
        exe: APP.into(),
    }
}

fn file(ino: u64) -> FileId {
    FileId { dev: 1, ino }
}

fn open_path(pid: u32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

/// libssl: SSL_connect (declared) at 0x100; in coverage mode also SSL_read and SSL_write (watched) at 0x200
/// and 0x300.
fn ssl_plan(s: &Session<FakeKernel>) -> FilePlan {
    let symbols = s.targets().file(ssl_index(s)).unwrap().symbols.len();
    FilePlan::Probe {
        build_id: Some("aa11".into()),
        points: (0..symbols)
            .map(|i| PlannedPoint {
                offset: 0x100 * (i as u64 + 1),
                symbols: vec![i],
            })
            .collect(),
        failures: vec![],
    }
}

fn ssl_index(s: &Session<FakeKernel>) -> usize {
    s.targets().index_of(SSL).unwrap()
}

fn attach_ssl(s: &mut Session<FakeKernel>, pid: u32) {
    s.add_process(&process(pid));
    let index = ssl_index(s);
    let plan = ssl_plan(s);
    let outcome = s.attach_file(pid, file(7), index, &open_path(pid, SSL), &plan);
    let expected = if s.mode() == Mode::Coverage { 3 } else { 1 };
    assert!(
        matches!(outcome, AttachOutcome::Attached { points } if points == expected),
        "{outcome:?}"
    );
}

/// `(pid, symbol, count, lower_bound)` of the call records.
fn calls(records: &[Record]) -> Vec<(u32, String, u64, bool)> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::Call {
                symbol,
                count,
                lower_bound,
                ..
            } => Some((r.pid.unwrap(), symbol.clone(), *count, *lower_bound)),
            _ => None,
        })
        .collect()
}

/// `(symbol, status, detail)` of the probe records.
fn probes(records: &[Record]) -> Vec<(Option<String>, ProbeStatus, Option<String>)> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::Probe {
                symbol,
                status,
                detail,
                ..
            } => Some((symbol.clone(), *status, detail.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn count_mode_counts_exactly_per_process_and_only_in_the_scoped_process() {
    let mut s = session(Mode::Count, 64);
    attach_ssl(&mut s, PID);
    // Count mode probes declared calls only: the watch-scope symbols are not targets.
    assert_eq!(s.targets().symbol_count(), 2);
    let target = open_path(PID, SSL);
    assert_eq!(s.backend.call(&target, PID, 0x100, 5), 5);
    assert_eq!(
        s.backend.call(&target, PID + 1, 0x100, 100),
        0,
        "another process is not in the scope"
    );
    s.tick();
    assert_eq!(
        s.backend.call(&target, PID, 0x100, 2),
        2,
        "count mode never stops trapping"
    );
    let records = s.flush(interval()).unwrap();
    assert_eq!(
        calls(&records),
        [(PID - 4000, "SSL_connect".to_owned(), 7, false)]
    );
    assert_eq!(records[0].exe.as_deref(), Some(APP));
    let RecordBody::Call {
        binary, build_id, ..
    } = &records[0].body
    else {
        panic!()
    };
    assert_eq!((binary.as_str(), build_id.as_deref()), (SSL, Some("aa11")));
    // The next interval starts from zero.
    assert!(s.flush(interval()).unwrap().is_empty());
}

#[test]
fn coverage_mode_stops_trapping_after_the_first_call_and_rearms_for_the_next_window() {
    let mut s = session(Mode::Coverage, 64);
    attach_ssl(&mut s, PID);
    let target = open_path(PID, SSL);
    assert_eq!(s.backend.armed(&target, PID), [0x100, 0x200, 0x300].into());
    s.backend.call(&target, PID, 0x100, 3);
    s.tick();
    assert_eq!(
        s.backend.armed(&target, PID),
        [0x200, 0x300].into(),
        "SSL_connect re-linked out"
    );
    assert_eq!(
        s.backend.call(&target, PID, 0x100, 1000),
        0,
        "no trap any more"
    );
    // A watched, undeclared function called: reported as a call (the verifier's unexpected symbol).
    s.backend.call(&target, PID, 0x300, 1);
    let records = s.flush(interval()).unwrap();
    assert_eq!(
        calls(&records),
        [
            (PID - 4000, "SSL_connect".to_owned(), 3, true),
            (PID - 4000, "SSL_write".to_owned(), 1, true)
        ]
    );
    assert_eq!(s.backend.armed(&target, PID), [0x200].into());
    assert_eq!(s.armed_points(), 1);

    s.rearm();
    assert_eq!(s.backend.armed(&target, PID), [0x100, 0x200, 0x300].into());
    s.backend.call(&target, PID, 0x100, 1);
    s.tick();
    assert_eq!(
        s.backend.armed(&target, PID),
        [0x200, 0x300].into(),
        "first-seen events were re-armed too"
    );
}

#[test]
fn coverage_mode_without_events_still_stops_trapping_what_the_counters_show() {
    let mut s = session(Mode::Coverage, 64);
    attach_ssl(&mut s, PID);
    let target = open_path(PID, SSL);
    s.backend.call(&target, PID, 0x200, 1);
    // The event was lost (ring buffer full): only the counter knows.
    let _ = s.backend.drain_first_seen(usize::MAX);
    let records = s.flush(interval()).unwrap();
    assert_eq!(calls(&records).len(), 1);
    assert_eq!(s.backend.armed(&target, PID), [0x100, 0x300].into());
}

#[test]
fn binary_mismatch_attaches_nothing_and_reports_each_declared_function() {
    let mut s = session(Mode::Coverage, 64);
    s.add_process(&process(PID));
    let plan = FilePlan::Mismatch {
        found_build_id: Some("ffff".into()),
        detail: "build-id ffff, the map expects aa11".into(),
    };
    let index = ssl_index(&s);
    let outcome = s.attach_file(PID, file(7), index, &open_path(PID, SSL), &plan);
    assert!(matches!(outcome, AttachOutcome::Mismatch));
    assert!(
        s.backend.links.is_empty(),
        "nothing may be attached to a mismatched file"
    );
    assert!(s.has_file(PID, &file(7)), "not checked again at every poll");
    let records = s.flush(interval()).unwrap();
    // Only the declared SSL_connect gets a record: watch-scope symbols are not paths.
    assert_eq!(
        probes(&records),
        [(
            Some("SSL_connect".into()),
            ProbeStatus::BinaryMismatch,
            Some("build-id ffff, the map expects aa11".into())
        )]
    );
    let RecordBody::Probe { build_id, .. } = &records[0].body else {
        panic!()
    };
    assert_eq!(
        build_id.as_deref(),
        Some("ffff"),
        "the build-id found on the running file"
    );
    // Repeated in every interval while the process lives, so every window sees it; once more in the
    // interval of the exit, then no more.
    assert_eq!(probes(&s.flush(interval()).unwrap()).len(), 1);
    s.remove_process(PID);
    assert_eq!(probes(&s.flush(interval()).unwrap()).len(), 1);
    assert!(s.flush(interval()).unwrap().is_empty());
}

#[test]
fn unresolvable_declared_functions_are_reported_and_the_rest_attached() {
    let mut s = session(Mode::Coverage, 64);
    s.add_process(&process(PID));
    let plan = FilePlan::Probe {
        build_id: Some("aa11".into()),
        points: vec![PlannedPoint {
            offset: 0x200,
            symbols: vec![1],
        }],
        failures: vec![
            SymbolFailure {
                symbol: 0,
                status: ProbeStatus::Unresolvable,
                detail: "ifunc".into(),
            },
            SymbolFailure {
                symbol: 2,
                status: ProbeStatus::Unresolvable,
                detail: "not defined".into(),
            },
        ],
    };
    let index = ssl_index(&s);
    assert!(matches!(
        s.attach_file(PID, file(7), index, &open_path(PID, SSL), &plan),
        AttachOutcome::Attached { points: 1 }
    ));
    let records = s.flush(interval()).unwrap();
    assert_eq!(
        probes(&records),
        [(
            Some("SSL_connect".into()),
            ProbeStatus::Unresolvable,
            Some("ifunc".into())
        )]
    );
}

#[test]
fn an_exited_process_keeps_its_last_counts_and_its_cookies_are_reused_cleanly() {
    let mut s = session(Mode::Coverage, 3);
    attach_ssl(&mut s, PID);
    let target = open_path(PID, SSL);
    s.backend.call(&target, PID, 0x100, 4);
    // Exit before the event was handled and before the flush.
    s.remove_process(PID);
    assert!(
        s.backend.links.is_empty(),
        "links of the exited process are detached"
    );
    // Its 3 cookies are free again: a new process gets them, with first-seen re-armed.
    attach_ssl(&mut s, PID + 1);
    let target2 = open_path(PID + 1, SSL);
    assert_eq!(
        s.backend.armed(&target2, PID + 1),
        [0x100, 0x200, 0x300].into()
    );
    s.backend.call(&target2, PID + 1, 0x100, 1);
    s.tick();
    assert_eq!(s.backend.armed(&target2, PID + 1), [0x200, 0x300].into());
    let records = s.flush(interval()).unwrap();
    assert_eq!(
        calls(&records),
        [
            (PID - 4000, "SSL_connect".to_owned(), 4, true),
            (PID + 1 - 4000, "SSL_connect".to_owned(), 1, true)
        ]
    );
}

#[test]
fn a_full_cookie_table_is_an_attach_failure_naming_the_fix() {
    let mut s = session(Mode::Coverage, 2);
    s.add_process(&process(PID));
    let index = ssl_index(&s);
    let plan = ssl_plan(&s);
    let outcome = s.attach_file(PID, file(7), index, &open_path(PID, SSL), &plan);
    assert!(matches!(outcome, AttachOutcome::Nothing));
    let records = s.flush(interval()).unwrap();
    let failures = probes(&records);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1, ProbeStatus::AttachFailed);
    assert!(
        failures[0].2.as_deref().unwrap().contains("--max-probes"),
        "{failures:?}"
    );
}

#[test]
fn a_refused_attach_is_left_to_the_caller_then_recorded() {
    let mut s = session(Mode::Count, 64);
    s.add_process(&process(PID));
    let path = open_path(PID, SSL);
    s.backend.refuse.insert(path.clone());
    let index = ssl_index(&s);
    let plan = ssl_plan(&s);
    let AttachOutcome::Failed(error) = s.attach_file(PID, file(7), index, &path, &plan) else {
        panic!("refused")
    };
    assert!(
        s.flush(interval()).unwrap().is_empty(),
        "nothing recorded until the caller knows the process is alive"
    );
    s.record_attach_failure(PID, file(7), index, &path, Some(&plan), &error.to_string());
    let failures = probes(&s.flush(interval()).unwrap());
    assert_eq!(
        failures.len(),
        1,
        "one declared function in the file: {failures:?}"
    );
    assert_eq!(failures[0].1, ProbeStatus::AttachFailed);
    // The cookies went back: a whole second file can still be attached in a 3-cookie table.
    let mut small = session(Mode::Coverage, 3);
    small.add_process(&process(PID));
    small.backend.refuse.insert(path.clone());
    let index = ssl_index(&small);
    let plan = ssl_plan(&small);
    assert!(matches!(
        small.attach_file(PID, file(7), index, &path, &plan),
        AttachOutcome::Failed(_)
    ));
    small.backend.refuse.clear();
    assert!(matches!(
        small.attach_file(PID, file(8), index, &path, &plan),
        AttachOutcome::Attached { points: 3 }
    ));
}

#[test]
fn functions_the_kernel_refuses_are_reported_and_the_rest_of_the_file_is_attached() {
    let mut s = session(Mode::Coverage, 64);
    s.add_process(&process(PID));
    let path = open_path(PID, SSL);
    // SSL_connect (declared, 0x100) and SSL_write (watched, 0x300) cannot be probed.
    s.backend.unprobeable.extend([0x100, 0x300]);
    let index = ssl_index(&s);
    let plan = ssl_plan(&s);
    let outcome = s.attach_file(PID, file(7), index, &path, &plan);
    assert!(
        matches!(outcome, AttachOutcome::Attached { points: 1 }),
        "{outcome:?}"
    );
    assert_eq!(
        s.backend.armed(&path, PID),
        [0x200].into(),
        "one link with the probeable rest"
    );
    s.backend.call(&path, PID, 0x200, 2);
    let records = s.flush(interval()).unwrap();
    assert_eq!(
        calls(&records),
        [(PID - 4000, "SSL_read".to_owned(), 2, true)]
    );
    let mut failures: Vec<_> = probes(&records).into_iter().map(|f| (f.0, f.1)).collect();
    failures.sort();
    // One record per refused function, the watched one included: a record without a symbol would say
    // the whole file failed.
    assert_eq!(
        failures,
        [
            (Some("SSL_connect".to_owned()), ProbeStatus::AttachFailed),
            (Some("SSL_write".to_owned()), ProbeStatus::AttachFailed),
        ]
    );
}

/// The flag of each attached offset of `target` in `pid`: whether it counts external callers only.
fn external_only(s: &Session<FakeKernel>, target: &std::path::Path) -> Vec<(u64, bool)> {
    let mut points: Vec<(u64, bool)> = s
        .backend
        .links
        .values()
        .filter(|l| l.target == target)
        .flat_map(|l| {
            l.points
                .iter()
                .map(|p| (p.offset, p.counts_external_callers_only()))
        })
        .collect();
    points.sort_unstable();
    points
}

#[test]
fn watched_library_functions_count_calls_from_other_objects_only() {
    let mut s = session(Mode::Coverage, 64);
    attach_ssl(&mut s, PID);
    let target = open_path(PID, SSL);
    // SSL_connect is declared (counted whoever calls it); SSL_read and SSL_write are only watched.
    assert_eq!(
        external_only(&s, &target),
        [(0x100, false), (0x200, true), (0x300, true)]
    );
    // libssl calling its own functions: the declared one counts, the watched ones do not.
    s.backend.call_internal(&target, PID, 0x100, 2);
    s.backend.call_internal(&target, PID, 0x300, 50);
    s.tick();
    assert_eq!(
        s.backend.armed(&target, PID),
        [0x200, 0x300].into(),
        "an internal call is no first call: SSL_write still traps"
    );
    // The app calling SSL_write itself: an unexpected symbol.
    s.backend.call(&target, PID, 0x300, 1);
    let records = s.flush(interval()).unwrap();
    assert_eq!(
        calls(&records),
        [
            (PID - 4000, "SSL_connect".to_owned(), 2, true),
            (PID - 4000, "SSL_write".to_owned(), 1, true)
        ]
    );
    // The flag survives re-links (coverage mode) and is part of every re-attach.
    s.rearm();
    assert_eq!(
        external_only(&s, &target),
        [(0x100, false), (0x200, true), (0x300, true)]
    );
}

#[test]
fn a_watched_function_its_library_keeps_calling_stops_trapping_at_the_budget() {
    let mut s = session(Mode::Coverage, 64);
    s.backend.internal_budget = 5;
    attach_ssl(&mut s, PID);
    let target = open_path(PID, SSL);
    s.backend.call_internal(&target, PID, 0x200, 4);
    s.tick();
    assert_eq!(s.backend.armed(&target, PID), [0x100, 0x200, 0x300].into());
    s.backend.call_internal(&target, PID, 0x200, 1);
    s.tick();
    assert_eq!(
        s.backend.armed(&target, PID),
        [0x100, 0x300].into(),
        "SSL_read reached the budget: not trapped for the rest of the window"
    );
    assert!(
        calls(&s.flush(interval()).unwrap()).is_empty(),
        "internal calls are never reported as calls"
    );
    s.rearm();
    assert_eq!(s.backend.armed(&target, PID), [0x100, 0x200, 0x300].into());
    s.backend.call_internal(&target, PID, 0x200, 4);
    s.tick();
    assert_eq!(
        s.backend.armed(&target, PID),
        [0x100, 0x200, 0x300].into(),
        "the budget restarts with the window"
    );
}

#[test]
fn an_executables_own_watched_functions_count_every_call() {
    // A static binary: its own functions are both the declared paths and the watch scope, and nothing
    // outside it calls them.
    let mut map = sample_map();
    map.predicate
        .watch_scopes
        .push(crate::function_map::WatchScope {
            binary: map.predicate.expected_paths[1].calls[0].binary.clone(),
            purl: None,
            tags: vec![],
            symbols: vec!["lg_hot".into(), "lg_watched".into()],
        });
    let targets = Targets::from_map(&map, true);
    let mut s = Session::new(
        FakeKernel::new(64),
        Arc::new(targets),
        Mode::Coverage,
        Origin::default(),
        1000,
    );
    s.add_process(&process(PID));
    let index = s.targets().index_of(APP).unwrap();
    let plan = FilePlan::Probe {
        build_id: Some("bb22".into()),
        points: vec![
            PlannedPoint {
                offset: 0x10,
                symbols: vec![0],
            },
            PlannedPoint {
                offset: 0x20,
                symbols: vec![1],
            },
        ],
        failures: vec![],
    };
    let target = open_path(PID, APP);
    assert!(matches!(
        s.attach_file(PID, file(9), index, &target, &plan),
        AttachOutcome::Attached { points: 2 }
    ));
    assert_eq!(external_only(&s, &target), [(0x10, false), (0x20, false)]);
    s.backend.call_internal(&target, PID, 0x20, 3);
    assert_eq!(
        calls(&s.flush(interval()).unwrap()),
        [(PID - 4000, "lg_watched".to_owned(), 3, true)]
    );
}
