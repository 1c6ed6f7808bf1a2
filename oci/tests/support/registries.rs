// SPDX-License-Identifier: Apache-2.0
//! Real registries on 127.0.0.1 for tests: ferro-oci-server in-process (referrers API) and Debian's
//! docker-registry as a child process (tag-schema fallback). Included by `oci/tests/registry.rs` and by
//! `tests/registry_cli.rs` with `#[path]`; each uses a part of it.
#![allow(dead_code, reason = "shared by two test crates; each uses a part")]

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Debian's docker-registry; LINKGUARD_DOCKER_REGISTRY points elsewhere (e.g. to check the SKIP path).
pub fn docker_registry() -> PathBuf {
    std::env::var_os("LINKGUARD_DOCKER_REGISTRY")
        .map_or_else(|| PathBuf::from("/usr/bin/docker-registry"), PathBuf::from)
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ferro,
    Distribution,
}

/// A running registry on 127.0.0.1 with its storage in a temp dir; stopped on drop.
pub struct Registry {
    pub kind: Kind,
    pub addr: String,
    pub storage: tempfile::TempDir,
    child: Option<Child>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Child::kill signals exactly this pid.
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

pub async fn start_ferro() -> Registry {
    let storage = tempfile::tempdir().unwrap();
    let store = ferro_blob_store::FsBlobStore::new(storage.path()).unwrap();
    let app = ferro_oci_server::build_app(Arc::new(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Registry {
        kind: Kind::Ferro,
        addr,
        storage,
        child: None,
        server: Some(server),
    }
}

pub fn start_distribution() -> Registry {
    let storage = tempfile::tempdir().unwrap();
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let root = storage.path().join("data");
    let config = storage.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            root.display()
        ),
    )
    .unwrap();
    let child = Command::new(docker_registry())
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut registry = Registry {
        kind: Kind::Distribution,
        addr: addr.clone(),
        storage,
        child: Some(child),
        server: None,
    };
    // Bounded wait for the listener: 100 x 50 ms.
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return registry;
        }
        if let Some(Some(status)) = registry.child.as_mut().map(|c| c.try_wait().unwrap()) {
            panic!("docker-registry exited with {status} before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not listen on {addr} within 5 s");
}
