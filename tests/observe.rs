// SPDX-License-Identifier: Apache-2.0
//! `linkguard observe` against real processes with real uprobes (root needed; see the harness's privilege
//! gate). Targets are small C programs (tests/targets/) built with gcc at test time whose functions run a
//! known number of times; maps are written by the test from the ELF facts of an independent parser. Each
//! test uses its own directory, so `--all` of one test never selects another test's processes.
#![expect(clippy::unwrap_used, reason = "tests: a failed step is a test failure")]

#[path = "observe_harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::*;
use serde_json::Value;

/// A fresh directory and the interactive target built in it.
fn setup(test: &str) -> Option<(tempfile::TempDir, std::path::PathBuf, ElfFacts)> {
    if !privileged(test) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = gcc("observe_target.c", &dir.path().join("app"), &[]);
    let facts = elf_facts(&app);
    Some((dir, app, facts))
}

fn observe_output(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("obs.ndjson")
}

fn lg_calls(app: &Path, facts: &ElfFacts) -> Vec<MapCall> {
    ["lg_hot", "lg_cold", "lg_never"]
        .iter()
        .map(|s| MapCall::new(s, app, facts))
        .collect()
}

#[test]
fn count_mode_counts_every_call_exactly_in_one_and_many_threads() {
    let Some((dir, app, facts)) =
        setup("count_mode_counts_every_call_exactly_in_one_and_many_threads")
    else {
        return;
    };
    let map = write_map(dir.path(), &app, &lg_calls(&app, &facts));
    let mut target = Target::program(&app);
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--pid", &target.pid.to_string(), "--mode", "count"],
    );
    observe.wait_attached(target.pid, &app);

    target.hot(100_000);
    target.cmd("t 4 25000");
    target.cmd("c");
    let (status, records) = observe.stop();
    assert!(status.success(), "{status}");

    assert_eq!(calls(&records, target.pid, "lg_hot"), 200_000);
    assert_eq!(calls(&records, target.pid, "lg_cold"), 1);
    assert_eq!(calls(&records, target.pid, "lg_never"), 0);
    assert!(probes(&records).is_empty(), "{records:?}");
    for record in records.iter().filter(|r| r["kind"] == "call") {
        assert_eq!(record["exe"], app.display().to_string());
        assert_eq!(record["binary"], app.display().to_string());
        assert_eq!(record["buildId"], facts.build_id);
        assert!(
            record.get("lowerBound").is_none(),
            "count mode counts are exact: {record}"
        );
    }
    assert!(target.finish().success());
    let (code, report) = verify(&map, &observe_output(&dir));
    assert_eq!(
        path_statuses(&report),
        expected_statuses(
            &app,
            &[
                ("lg_hot", "observed"),
                ("lg_cold", "observed"),
                ("lg_never", "unobserved")
            ]
        )
    );
    assert_eq!(report["paths"][0]["count"], 200_000);
    assert_eq!(report["observationRate"]["observed"], 2);
    assert_eq!(
        code, 1,
        "2 of 3 required paths observed, the map asks for 1.0"
    );
}

#[test]
fn a_target_in_its_own_mount_namespace_is_counted_through_its_root() {
    let Some((dir, real, real_facts)) =
        setup("a_target_in_its_own_mount_namespace_is_counted_through_its_root")
    else {
        return;
    };
    // At the same path the host has another build: the namespaced process sees `real` bind-mounted over it.
    let app = gcc(
        "observe_target.c",
        &dir.path().join("app-host"),
        &["-DLG_VARIANT=1"],
    );
    let host_facts = elf_facts(&app);
    assert_ne!(host_facts.offsets["lg_hot"], real_facts.offsets["lg_hot"]);
    let map = write_map(dir.path(), &app, &lg_calls(&app, &real_facts));

    let mut inside = Command::new("unshare");
    inside
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind '{}' '{}' && exec '{}'",
            real.display(),
            app.display(),
            app.display()
        ));
    let mut namespaced = Target::start(inside);
    let mut host = Target::program(&app);
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--all", "--mode", "count"],
    );
    observe.wait_attached(namespaced.pid, &app);
    observe.wait_for("the host process's mismatch", |f| {
        f["message"] == "binary mismatch: nothing attached" && f["pid"] == host.pid
    });

    namespaced.hot(1000);
    host.hot(1000);
    // The breakpoint is in the namespaced process's copy of its own file, and nowhere in the host's file.
    let inside_root =
        Path::new(&format!("/proc/{}/root", namespaced.pid)).join(app.strip_prefix("/").unwrap());
    assert_eq!(
        text_byte(namespaced.pid, &inside_root, real_facts.offsets["lg_hot"]),
        INT3
    );
    assert_ne!(
        text_byte(host.pid, &app, host_facts.offsets["lg_hot"]),
        INT3
    );
    assert_ne!(
        text_byte(host.pid, &app, real_facts.offsets["lg_hot"]),
        INT3
    );
    let (status, records) = observe.stop();
    assert!(status.success());

    assert_eq!(calls(&records, namespaced.pid, "lg_hot"), 1000);
    assert_eq!(calls(&records, host.pid, "lg_hot"), 0);
    let mismatches: Vec<&Value> = probes(&records)
        .into_iter()
        .filter(|r| r["pid"] == host.pid)
        .collect();
    assert_eq!(
        mismatches.len(),
        3,
        "one per declared function: {mismatches:?}"
    );
    assert!(
        mismatches
            .iter()
            .all(|r| r["status"] == "binary-mismatch" && r["buildId"] == host_facts.build_id)
    );
    assert!(
        probes(&records).iter().all(|r| r["pid"] == host.pid),
        "nothing failed for the namespaced process"
    );
    assert!(namespaced.finish().success());
    assert!(host.finish().success());
    // Fail closed (verification.md section 5): the file at this path was also seen as another build.
    let (code, report) = verify(&map, &observe_output(&dir));
    let statuses = path_statuses(&report);
    assert!(
        statuses
            .iter()
            .all(|(_, status)| status == "binary-mismatch"),
        "{statuses:?}"
    );
    assert_eq!(code, 1);
}

#[test]
fn pids_are_reported_as_the_app_sees_them_in_its_own_pid_namespace() {
    let Some((dir, app, facts)) =
        setup("pids_are_reported_as_the_app_sees_them_in_its_own_pid_namespace")
    else {
        return;
    };
    let map = write_map(dir.path(), &app, &lg_calls(&app, &facts));
    let mut observe = Observe::start(&map, &observe_output(&dir), &["--all", "--mode", "count"]);
    observe.wait_for("start", |f| f["message"] == "observing");
    let mut inside = Command::new("unshare");
    inside
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(&app);
    let mut target = Target::start(inside);
    assert_eq!(target.pid, 1, "the target is pid 1 of its namespace");
    observe.wait_attached(1, &app);
    target.hot(300);
    let (status, records) = observe.stop();
    assert!(status.success());
    assert_eq!(calls(&records, 1, "lg_hot"), 300, "{records:?}");
    assert!(records.iter().all(|r| r["pid"] == 1));
    assert!(target.finish().success());
}

#[test]
fn a_library_function_is_counted_only_in_the_scoped_process() {
    let test = "a_library_function_is_counted_only_in_the_scoped_process";
    if !privileged(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = gcc(
        "observe_crypto.c",
        &dir.path().join("crypto-app"),
        &["-lcrypto"],
    );
    let mut scoped = Target::program(&app);
    let mut other = Target::program(&app);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", scoped.pid)).unwrap();
    let libcrypto = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libcrypto.so"))
        .map(std::path::PathBuf::from)
        .unwrap();
    let facts = elf_facts(&libcrypto);
    let map = write_map(
        dir.path(),
        &app,
        &[MapCall::new("SHA256", &libcrypto, &facts).with_version("OPENSSL_3.0.0")],
    );
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--pid", &scoped.pid.to_string(), "--mode", "count"],
    );
    observe.wait_attached(scoped.pid, &libcrypto);

    scoped.cmd("s 500");
    other.cmd("s 700");
    let sha256 = facts.offsets["SHA256"];
    assert_eq!(text_byte(scoped.pid, &libcrypto, sha256), INT3);
    assert_ne!(
        text_byte(other.pid, &libcrypto, sha256),
        INT3,
        "the other process pays nothing"
    );
    let (status, records) = observe.stop();
    assert!(status.success());
    assert_eq!(calls(&records, scoped.pid, "SHA256"), 500);
    assert!(records.iter().all(|r| r["pid"] != other.pid), "{records:?}");
    let record = records.iter().find(|r| r["kind"] == "call").unwrap();
    assert_eq!(record["binary"], libcrypto.display().to_string());
    assert_eq!(record["buildId"], facts.build_id);
    let (code, report) = verify(&map, &observe_output(&dir));
    assert_eq!(
        path_statuses(&report),
        expected_statuses(&app, &[("SHA256", "observed")])
    );
    assert_eq!(code, 0);
}

#[test]
fn a_process_started_after_the_probes_is_counted_within_one_second() {
    let Some((dir, app, facts)) =
        setup("a_process_started_after_the_probes_is_counted_within_one_second")
    else {
        return;
    };
    let map = write_map(dir.path(), &app, &lg_calls(&app, &facts));
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--all", "--mode", "count"],
    );
    observe.wait_for("start", |f| f["message"] == "observing");
    let mut target = Target::program(&app);
    // The requirement: probed within 1 s of the exec.
    std::thread::sleep(Duration::from_secs(1));
    target.hot(1000);
    let (status, records) = observe.stop();
    assert!(status.success());
    assert_eq!(calls(&records, target.pid, "lg_hot"), 1000);
    assert!(target.finish().success());
}

#[test]
fn observe_command_counts_a_process_that_lives_milliseconds_and_passes_on_its_status() {
    let Some((dir, app, facts)) =
        setup("observe_command_counts_a_process_that_lives_milliseconds_and_passes_on_its_status")
    else {
        return;
    };
    let map = write_map(dir.path(), &app, &lg_calls(&app, &facts));
    let output = dir.path().join("obs.ndjson");
    let started = std::time::Instant::now();
    let (status, records, stderr) = observe_command(
        &map,
        &output,
        &["--mode", "count"],
        &[app.to_str().unwrap(), "run", "1000"],
    );
    eprintln!("observe -- CMD took {:?} in all", started.elapsed());
    assert_eq!(
        status.code(),
        Some(3),
        "the command's exit status: {stderr}"
    );
    let pid = records.iter().find(|r| r["kind"] == "call").unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    assert_eq!(calls(&records, pid, "lg_hot"), 1000, "{stderr}");
    assert_eq!(calls(&records, pid, "lg_cold"), 1);
    assert!(
        records
            .iter()
            .all(|r| r["exe"] == app.display().to_string())
    );
    let (_, report) = verify(&map, &output);
    assert_eq!(
        path_statuses(&report),
        expected_statuses(
            &app,
            &[
                ("lg_hot", "observed"),
                ("lg_cold", "observed"),
                ("lg_never", "unobserved")
            ]
        )
    );
}

#[test]
fn sigterm_is_passed_to_the_command_and_what_was_counted_is_written() {
    let Some((dir, app, facts)) =
        setup("sigterm_is_passed_to_the_command_and_what_was_counted_is_written")
    else {
        return;
    };
    let map = write_map(dir.path(), &app, &lg_calls(&app, &facts));
    // 1000 calls, then a 60 s sleep that SIGTERM cuts short (lg_cold is never reached).
    let app_arg = app.display().to_string();
    let mut observe = Observe::start(
        &map,
        &observe_output(&dir),
        &["--mode", "count", "--", &app_arg, "run", "1000", "60000"],
    );
    observe.wait_for("the command's calls flushed", |f| {
        f["message"] == "flushed" && f["records"] == 1
    });
    let (status, records) = observe.stop();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "the command's status: killed by SIGTERM"
    );
    let pid = records[0]["pid"].as_u64().unwrap() as u32;
    assert_eq!(calls(&records, pid, "lg_hot"), 1000);
    assert_eq!(calls(&records, pid, "lg_cold"), 0);
    let mut gone = false;
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "the command was reaped");
}

#[test]
fn a_build_id_mismatch_attaches_nothing_and_the_target_keeps_running() {
    let Some((dir, app, facts)) =
        setup("a_build_id_mismatch_attaches_nothing_and_the_target_keeps_running")
    else {
        return;
    };
    // The map was made from another build of the same program: its offsets point into the middle of
    // instructions of the running file, which would crash it if they were used.
    let other = gcc(
        "observe_target.c",
        &dir.path().join("other-build"),
        &["-DLG_VARIANT=1"],
    );
    let stale = elf_facts(&other);
    assert_ne!(stale.offsets["lg_hot"], facts.offsets["lg_hot"]);
    let calls_of_other: Vec<MapCall> = ["lg_hot", "lg_cold", "lg_never"]
        .iter()
        .map(|s| MapCall::new(s, &app, &stale).with_offset(&stale))
        .collect();
    let map = write_map(dir.path(), &app, &calls_of_other);
    let mut target = Target::program(&app);
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--pid", &target.pid.to_string(), "--mode", "count"],
    );
    observe.wait_for("the mismatch", |f| {
        f["message"] == "binary mismatch: nothing attached" && f["pid"] == target.pid
    });

    target.hot(1000);
    target.cmd("c");
    assert_ne!(text_byte(target.pid, &app, stale.offsets["lg_hot"]), INT3);
    assert_ne!(text_byte(target.pid, &app, facts.offsets["lg_hot"]), INT3);
    let (status, records) = observe.stop();
    assert!(status.success());
    assert!(records.iter().all(|r| r["kind"] != "call"), "{records:?}");
    let failures = probes(&records);
    assert_eq!(failures.len(), 3, "{failures:?}");
    for failure in failures {
        assert_eq!(failure["status"], "binary-mismatch");
        assert_eq!(
            failure["buildId"], facts.build_id,
            "the build-id found on the running file"
        );
        assert!(
            failure["detail"]
                .as_str()
                .unwrap()
                .contains(&stale.build_id)
        );
    }
    assert!(target.finish().success(), "the target did not crash");
    let (code, report) = verify(&map, &observe_output(&dir));
    let statuses = path_statuses(&report);
    assert_eq!(statuses.len(), 3);
    assert!(
        statuses
            .iter()
            .all(|(_, status)| status == "binary-mismatch"),
        "{statuses:?}"
    );
    assert_eq!(code, 1);
}

#[test]
fn a_binary_replaced_on_disk_is_checked_again_when_the_process_execs_it() {
    let Some((dir, app, facts)) =
        setup("a_binary_replaced_on_disk_is_checked_again_when_the_process_execs_it")
    else {
        return;
    };
    let map = write_map(dir.path(), &app, &lg_calls(&app, &facts));
    let mut target = Target::program(&app);
    let mut observe = Observe::start(
        &map,
        &observe_output(&dir),
        &["--pid", &target.pid.to_string(), "--mode", "count"],
    );
    observe.wait_attached(target.pid, &app);
    target.hot(100);

    // A new build at the same path (a new inode, as a package upgrade does), then the process re-execs it.
    let upgrade = gcc(
        "observe_target.c",
        &dir.path().join("app.new"),
        &["-DLG_VARIANT=1"],
    );
    let new_facts = elf_facts(&upgrade);
    std::fs::rename(&upgrade, &app).unwrap();
    target.reexec();
    observe.wait_for("the new build's mismatch", |f| {
        f["message"] == "binary mismatch: nothing attached" && f["pid"] == target.pid
    });
    target.hot(50);
    assert_ne!(text_byte(target.pid, &app, facts.offsets["lg_hot"]), INT3);
    assert_ne!(
        text_byte(target.pid, &app, new_facts.offsets["lg_hot"]),
        INT3
    );
    let (status, records) = observe.stop();
    assert!(status.success());
    // The calls of the old image were counted; none of the new one was (its build is not the map's).
    assert_eq!(calls(&records, target.pid, "lg_hot"), 100);
    assert!(
        records
            .iter()
            .filter(|r| r["kind"] == "call")
            .all(|r| r["buildId"] == facts.build_id)
    );
    let mismatches = probes(&records);
    assert_eq!(mismatches.len(), 3, "{mismatches:?}");
    assert!(
        mismatches
            .iter()
            .all(|r| r["status"] == "binary-mismatch" && r["buildId"] == new_facts.build_id)
    );
    assert!(target.finish().success(), "the re-exec'd target ran fine");
}

#[test]
fn a_stripped_binary_is_probed_at_the_offsets_recorded_in_the_map() {
    let Some((dir, full, facts)) =
        setup("a_stripped_binary_is_probed_at_the_offsets_recorded_in_the_map")
    else {
        return;
    };
    let app = dir.path().join("stripped-app");
    let status = Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(&app)
        .arg(&full)
        .status()
        .unwrap();
    assert!(status.success());
    let stripped = elf_facts(&app);
    assert!(!stripped.has_symtab && !stripped.offsets.contains_key("lg_hot"));
    assert_eq!(
        stripped.build_id, facts.build_id,
        "strip keeps the build-id note"
    );
    let calls_with_offsets: Vec<MapCall> = ["lg_hot", "lg_cold"]
        .iter()
        .map(|s| MapCall::new(s, &app, &facts).with_offset(&facts))
        .collect();
    let map = write_map(dir.path(), &app, &calls_with_offsets);
    let mut target = Target::program(&app);
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--pid", &target.pid.to_string(), "--mode", "count"],
    );
    observe.wait_attached(target.pid, &app);
    target.hot(777);
    target.cmd("c");
    let (status, records) = observe.stop();
    assert!(status.success());
    assert_eq!(calls(&records, target.pid, "lg_hot"), 777);
    assert_eq!(calls(&records, target.pid, "lg_cold"), 1);
    assert!(probes(&records).is_empty(), "{records:?}");
    assert!(target.finish().success());
    let (code, report) = verify(&map, &observe_output(&dir));
    assert_eq!(
        path_statuses(&report),
        expected_statuses(&app, &[("lg_hot", "observed"), ("lg_cold", "observed")])
    );
    assert_eq!(code, 0);
}

#[test]
fn a_missing_symbol_is_reported_unresolvable_and_the_rest_is_counted() {
    let Some((dir, app, facts)) =
        setup("a_missing_symbol_is_reported_unresolvable_and_the_rest_is_counted")
    else {
        return;
    };
    let map = write_map(
        dir.path(),
        &app,
        &[
            MapCall::new("lg_hot", &app, &facts),
            MapCall::new("lg_absent", &app, &facts),
        ],
    );
    let mut target = Target::program(&app);
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--pid", &target.pid.to_string(), "--mode", "count"],
    );
    observe.wait_attached(target.pid, &app);
    target.hot(10);
    let (status, records) = observe.stop();
    assert!(status.success());
    assert_eq!(calls(&records, target.pid, "lg_hot"), 10);
    let failures = probes(&records);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["symbol"], "lg_absent");
    assert_eq!(failures[0]["status"], "unresolvable");
    assert_eq!(failures[0]["buildId"], facts.build_id);
    assert!(target.finish().success());
    let (_, report) = verify(&map, &observe_output(&dir));
    assert_eq!(
        path_statuses(&report),
        expected_statuses(
            &app,
            &[("lg_hot", "observed"), ("lg_absent", "unresolvable")]
        )
    );
}

#[test]
fn processes_exiting_during_discovery_and_attach_are_not_failures() {
    let Some((dir, app, facts)) =
        setup("processes_exiting_during_discovery_and_attach_are_not_failures")
    else {
        return;
    };
    let map = write_map(dir.path(), &app, &lg_calls(&app, &facts));
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--all", "--mode", "count"],
    );
    observe.wait_for("start", |f| f["message"] == "observing");
    let mut long_lived = Target::program(&app);
    observe.wait_attached(long_lived.pid, &app);
    // 300 processes living 0 to 9 ms each: polls (every 100 ms) catch many of them mid-life, and they exit
    // at every stage of discovery, planning and attach.
    let mut churn = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt 300 ]; do '{}' run 20 $((i % 10)); i=$((i+1)); done",
            app.display()
        ))
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while churn.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = churn.kill();
            let _ = churn.wait();
            panic!("the churn loop did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    long_lived.hot(1000);
    let followed = observe
        .events()
        .iter()
        .filter(|e| e["fields"]["message"] == "following process")
        .count();
    let (status, records) = observe.stop();
    assert!(status.success(), "{status}");
    assert!(
        followed > 1,
        "no short-lived process was caught: the race was not exercised"
    );
    eprintln!("short-lived processes followed: {}", followed - 1);
    assert_eq!(calls(&records, long_lived.pid, "lg_hot"), 1000);
    assert!(
        probes(&records).is_empty(),
        "an exit is not a probe failure: {:?}",
        probes(&records)
    );
    // No call is attributed twice or to the wrong process when cookies are reused.
    for record in records
        .iter()
        .filter(|r| r["kind"] == "call" && r["pid"] != long_lived.pid)
    {
        let limit = if record["symbol"] == "lg_hot" { 20 } else { 1 };
        assert!(record["count"].as_u64().unwrap() <= limit, "{record}");
    }
    assert!(records.iter().all(|r| r["kind"] != "drop"));
    assert!(long_lived.finish().success());
}

#[test]
fn coverage_mode_stops_trapping_after_the_first_call_and_rearms_each_window() {
    let Some((dir, app, facts)) =
        setup("coverage_mode_stops_trapping_after_the_first_call_and_rearms_each_window")
    else {
        return;
    };
    let map = write_map(dir.path(), &app, &lg_calls(&app, &facts));
    let mut target = Target::program(&app);
    let unprobed = target.hot(1_000_000);
    let mut observe = Observe::start(
        &map,
        &dir.path().join("obs.ndjson"),
        &["--pid", &target.pid.to_string(), "--window", "5"],
    );
    observe.wait_attached(target.pid, &app);
    let hot = facts.offsets["lg_hot"];
    assert_eq!(text_byte(target.pid, &app, hot), INT3);

    let first = target.hot(1);
    let (seen, _) = observe.wait_for_from(0, "lg_hot re-linked out", |f| {
        f["message"] == "flushed" && f["armed"] == 2
    });
    assert_ne!(
        text_byte(target.pid, &app, hot),
        INT3,
        "the breakpoint is gone after the first call"
    );
    let steady = target.hot(1_000_000);
    target.cmd("c");
    eprintln!(
        "ns per call: unprobed {unprobed}, first (trapped) call {first}, coverage steady state {steady}"
    );

    // The next window traps again until the next first call.
    let (rearmed, _) = observe.wait_for_from(seen + 1, "the next window", |f| {
        f["message"] == "flushed" && f["armed"] == 3
    });
    assert_eq!(text_byte(target.pid, &app, hot), INT3);
    target.hot(5);
    observe.wait_for_from(rearmed + 1, "lg_hot seen again", |f| {
        f["message"] == "flushed" && f["armed"] == 2
    });
    let (status, records) = observe.stop();
    assert!(status.success());

    let hot_records: Vec<&Value> = records.iter().filter(|r| r["symbol"] == "lg_hot").collect();
    assert_eq!(
        hot_records.len(),
        2,
        "one record per window: {hot_records:?}"
    );
    assert!(hot_records.iter().all(|r| r["lowerBound"] == true));
    // Window 1: 1 + 1,000,000 calls, only the first trapped. Window 2: 5 calls in a burst, all before the
    // re-link (at most 5 trap): counts are lower bounds.
    assert_eq!(hot_records[0]["count"], 1, "{}", hot_records[0]);
    assert!(
        (1..=5).contains(&hot_records[1]["count"].as_u64().unwrap()),
        "{}",
        hot_records[1]
    );
    assert_eq!(calls(&records, target.pid, "lg_cold"), 1);
    assert_eq!(calls(&records, target.pid, "lg_never"), 0);
    assert!(target.finish().success());
    let (_, report) = verify(&map, &observe_output(&dir));
    assert_eq!(
        path_statuses(&report),
        expected_statuses(
            &app,
            &[
                ("lg_hot", "observed"),
                ("lg_cold", "observed"),
                ("lg_never", "unobserved")
            ]
        )
    );
    assert_eq!(report["paths"][0]["calls"][0]["lowerBound"], true);
}

#[test]
fn a_chrooted_target_is_reported_with_the_entrypoint_as_the_app_sees_it() {
    let test = "a_chrooted_target_is_reported_with_the_entrypoint_as_the_app_sees_it";
    if !privileged(test) {
        return;
    }
    // A container's root seen from linkguard: /proc/<pid>/exe reads as a host path (<dir>/root/app)
    // while the map, and the app, say /app. Records must say /app, or verification (which requires
    // `exe` to equal the path's entrypoint) credits nothing.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let app = gcc("observe_target.c", &root.join("app"), &["-static"]);
    let facts = elf_facts(&app);
    let in_root = Path::new("/app");
    let map_calls: Vec<MapCall> = ["lg_hot", "lg_cold", "lg_never"]
        .iter()
        .map(|s| MapCall::new(s, in_root, &facts))
        .collect();
    let map = write_map(dir.path(), in_root, &map_calls);

    let mut chroot = Command::new("chroot");
    chroot.arg(&root).arg("/app");
    let mut target = Target::start(chroot);
    let mut observe = Observe::start(&map, &observe_output(&dir), &["--all", "--mode", "count"]);
    observe.wait_attached(target.pid, in_root);
    target.hot(500);
    let (status, records) = observe.stop();
    assert!(status.success());
    assert_eq!(calls(&records, target.pid, "lg_hot"), 500);
    let exes: Vec<&Value> = records
        .iter()
        .filter(|r| r["pid"] == target.pid)
        .map(|r| &r["exe"])
        .collect();
    assert!(!exes.is_empty());
    assert!(exes.iter().all(|e| *e == "/app"), "{exes:?}");
    assert!(target.finish().success());

    let (_, report) = verify(&map, &observe_output(&dir));
    let statuses = path_statuses(&report);
    assert!(
        statuses.contains(&("app:lg_hot".to_owned(), "observed".to_owned())),
        "{statuses:?}"
    );
}
