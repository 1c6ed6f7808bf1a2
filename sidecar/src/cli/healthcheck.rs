// SPDX-License-Identifier: Apache-2.0
//! `linkguard healthcheck --url URL`: one HTTP GET, exit 0 on a 2xx answer. The runtime image has no
//! shell, curl or wget, so container healthchecks (Compose `healthcheck`, Docker `HEALTHCHECK`) call
//! the binary itself.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::{EXIT_FAIL, EXIT_OK};

/// Exit status: 0 the endpoint answered 2xx, 1 it answered something else or could not be reached,
/// 2 bad URL.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  linkguard healthcheck --url http://127.0.0.1:9464/healthz
  linkguard healthcheck --url http://127.0.0.1:9464/readyz --timeout 5

Exit status: 0 a 2xx answer, 1 any other answer or no answer, 2 bad URL.")]
pub struct HealthcheckArgs {
    /// The endpoint: http://HOST:PORT/PATH (plain HTTP; the sidecar serves /healthz and /readyz).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9464/healthz"
    )]
    url: String,
    /// Seconds to wait for the connection and the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    timeout: u64,
}

/// `http://host:port/path` split into the address to connect to, the Host header and the path.
fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("--url {url:?}: only plain http:// URLs are supported (the sidecar's own port)")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        anyhow::bail!("--url {url:?}: expected http://HOST:PORT/PATH");
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

pub fn run(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let (authority, path) = parse_url(&args.url)?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let status = match get_status(&authority, &path, timeout) {
        Ok(status) => status,
        Err(err) => {
            eprintln!("{}: {err:#}", args.url);
            return Ok(EXIT_FAIL);
        }
    };
    if (200..300).contains(&status) {
        println!("{}: {status}", args.url);
        Ok(EXIT_OK)
    } else {
        eprintln!("{}: {status}", args.url);
        Ok(EXIT_FAIL)
    }
}

fn get_status(authority: &str, path: &str, timeout: Duration) -> anyhow::Result<u16> {
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: a server that answers after the first segment must see the whole request.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: linkguard-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .context("cannot send the request")?;
    // The status line is all we need; read at most 4 KiB.
    let mut head = Vec::with_capacity(256);
    stream
        .take(4096)
        .read_to_end(&mut head)
        .context("no answer")?;
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|s| s.parse::<u16>().ok()),
    ) {
        (Some(version), Some(status)) if version.starts_with("HTTP/") => Ok(status),
        _ => anyhow::bail!("not an HTTP answer: {:?}", line.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:9464/healthz").unwrap(),
            ("127.0.0.1:9464".to_owned(), "/healthz".to_owned())
        );
        assert_eq!(
            parse_url("http://localhost").unwrap(),
            ("localhost:80".to_owned(), "/".to_owned())
        );
        assert_eq!(
            parse_url("http://[::1]:9464/readyz").unwrap(),
            ("[::1]:9464".to_owned(), "/readyz".to_owned())
        );
        assert!(parse_url("https://x/healthz").is_err());
        assert!(parse_url("http:///healthz").is_err());
    }

    #[test]
    fn the_status_line_decides() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\nok",
                "HTTP/1.1 503 Service Unavailable\r\n\r\nno",
                "garbage",
            ] {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).unwrap();
                conn.write_all(answer.as_bytes()).unwrap();
            }
        });
        let timeout = Duration::from_secs(5);
        let authority = addr.to_string();
        assert_eq!(get_status(&authority, "/healthz", timeout).unwrap(), 200);
        assert_eq!(get_status(&authority, "/healthz", timeout).unwrap(), 503);
        assert!(get_status(&authority, "/healthz", timeout).is_err());
        server.join().unwrap();
    }
}
