//! A real headless Chromium for the status page's tests, driven over the DevTools protocol on
//! a pipe (`--remote-debugging-pipe`: commands on its fd 3, answers on its fd 4, each one JSON
//! message ended by a NUL byte), so no WebSocket client is needed.
//!
//! The browser is Debian's `chromium` (or the one `CHROMIUM` names). When it is missing the
//! tests fail, saying how to install it; `.ci/run` installs it.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::WAIT;

/// The variable that names the browser to use, over `chromium` on the PATH.
pub const CHROMIUM_ENV: &str = "CHROMIUM";

/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium binary; panics, saying how to install it, when there is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os(CHROMIUM_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|path| path.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "chromium is not installed: the status page is tested in a real headless browser. \
             Install Debian's with `apt-get install -y chromium` (as root; .ci/run does so on \
             CI), or name a Chromium binary in {CHROMIUM_ENV}."
        )
    })
}

/// A pipe whose ends close on exec: (read, write).
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given, which has room for two.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// A headless Chromium with one page open, attached to it.
pub struct Browser {
    child: Child,
    commands: File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts the browser on `url` (a window of 1400×1000) and attaches to its page.
    pub fn open(url: &str) -> Self {
        let binary = chromium();
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let log = File::create(profile.path().join("chromium.log")).expect("the browser's log");
        let (command_read, command_write) = pipe();
        let (answer_read, answer_write) = pipe();
        let mut command = Command::new(&binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1400,1000",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2) run. The
        // ends are first copied above fd 10, so placing them at 3 and 4 cannot overwrite one
        // with the other; the copies at 3 and 4 lose close-on-exec, everything else keeps it.
        unsafe {
            command.pre_exec(move || {
                let read = libc::fcntl(command_read, libc::F_DUPFD_CLOEXEC, 10);
                let write = libc::fcntl(answer_write, libc::F_DUPFD_CLOEXEC, 10);
                if read < 0 || write < 0 || libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        // SAFETY: each descriptor came from pipe2 above and is owned by exactly one File.
        let (commands, answers_file, child_ends) = unsafe {
            (
                File::from_raw_fd(command_write),
                File::from_raw_fd(answer_read),
                [
                    File::from_raw_fd(command_read),
                    File::from_raw_fd(answer_write),
                ],
            )
        };
        // The child has its copies; ours would keep the pipes open after it exits.
        drop(child_ends);
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers_file);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice(&message) {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
                message.clear();
            }
        });
        let mut browser = Self {
            child,
            commands,
            answers,
            next_id: 0,
            session: String::new(),
            profile,
        };
        browser.attach();
        browser
    }

    /// The browser's own log, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }

    /// Sends `method` with `params` (to the page when `to_page`) and waits for its result.
    fn call(&mut self, method: &str, params: Value, to_page: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if to_page {
            message["sessionId"] = Value::from(self.session.clone());
        }
        let mut bytes = serde_json::to_vec(&message).expect("a command is JSON");
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            panic!(
                "{method}: the browser is gone ({e}); its log:\n{}",
                self.log()
            );
        }
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(answer) if answer["id"] == id => {
                    if let Some(error) = answer.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return answer["result"].clone();
                }
                Ok(_event) => {}
                Err(_) => panic!(
                    "{method}: no answer from the browser within {COMMAND_TIMEOUT:?}; its log:\n{}",
                    self.log()
                ),
            }
        }
    }

    /// Attaches to the page the browser opened.
    fn attach(&mut self) {
        let deadline = Instant::now() + WAIT;
        let target = loop {
            let targets = self.call("Target.getTargets", json!({}), false);
            let page = targets["targetInfos"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["targetId"].as_str())
                .map(str::to_owned);
            if let Some(page) = page {
                break page;
            }
            assert!(Instant::now() < deadline, "the browser opened no page");
            std::thread::sleep(Duration::from_millis(50));
        };
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
            false,
        );
        self.session = attached["sessionId"]
            .as_str()
            .expect("attaching answers a session")
            .to_owned();
    }

    /// The value of `expression` evaluated in the page (`null` when it throws).
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            true,
        );
        if result.get("exceptionDetails").is_some() {
            return Value::Null;
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until `done` holds of its value, and returns that value;
    /// panics naming `what`, with the last value, after [`WAIT`].
    pub fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.evaluate(expression);
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}; last: {value}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the page to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }), true);
        let data = shot["data"].as_str().expect("a screenshot is base64");
        std::fs::write(path, decode_base64(data)).expect("writing the screenshot");
    }
}

/// Standard base64 (with padding), as DevTools sends binary data.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        let mut close = serde_json::to_vec(&json!({ "id": 0, "method": "Browser.close" }))
            .expect("a command is JSON");
        close.push(0);
        let _ = self.commands.write_all(&close);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
