//! Plain HTTP/1.0 GETs against the daemon's metrics listener (`/metrics`, the health probes,
//! the inspection API), and polling one of its JSON answers until a condition holds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::deadline;

/// GET `path` from `addr`: (status, body).
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// GET `path` from `addr` as JSON: (status, body); panics when the body is not JSON.
pub fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = get(addr, path);
    let json = serde_json::from_str(&body).unwrap_or_else(|e| {
        panic!("GET {path}: {status} with a body that is not JSON ({e}): {body}")
    });
    (status, json)
}

/// Polls GET `path` until it answers 200 with JSON for which `done` holds, and returns that
/// JSON; panics with the last answer after the deadline.
pub fn poll_json(addr: &str, path: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
    let deadline = deadline();
    loop {
        let (status, body) = get(addr, path);
        if status == 200 {
            if let Ok(json) = serde_json::from_str::<Value>(&body) {
                if done(&json) {
                    return json;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never answered as expected; last: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
