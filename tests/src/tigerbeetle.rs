//! Starts a throwaway single-replica TigerBeetle for a test binary.
//!
//! The server is formatted into a temporary file and started with `--addresses=0`, so it
//! picks a free port and prints it; it exits by itself when its stdin closes, which happens
//! when the test binary exits, however it exits.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

/// Version of the server the ops scripts build; the client crate is pinned to it.
pub const TB_VERSION: &str = "0.16.78";

/// Where `ops/` caches the server binary, unless `ALLOT_TB_BIN` says otherwise.
pub fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ALLOT_TB_BIN") {
        return bin.into();
    }
    let cache = std::env::var_os("ALLOT_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/allot")
    });
    cache.join(format!("tigerbeetle-{TB_VERSION}")).join("tigerbeetle")
}

/// A running server. Dropping it (or exiting) closes its stdin, which stops it.
#[derive(Debug)]
pub struct Server {
    pub port: u16,
    child: Child,
    _stdin: ChildStdin,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Formats a fresh data file and starts a server on a free port, in development mode:
    /// small batches and no direct I/O, which suit many short tests on any file system.
    pub fn start() -> Server {
        Server::start_with(true, "256MiB")
    }

    /// As [`Server::start`], choosing the mode. Production mode (`development = false`)
    /// keeps TigerBeetle's full batch size, so throughput figures mean something; it needs
    /// a temp dir on a file system with direct I/O (not tmpfs) and more memory.
    pub fn start_with(development: bool, cache_grid: &str) -> Server {
        let bin = server_binary();
        assert!(bin.exists(), "no TigerBeetle at {} (run ./ops/test to build it)", bin.display());
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("0_0.tigerbeetle");
        let dev: &[&str] = if development { &["--development"] } else { &[] };
        let status = Command::new(&bin)
            .args(["format", "--cluster=0", "--replica=0", "--replica-count=1"])
            .args(dev)
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run tigerbeetle format");
        assert!(status.success(), "tigerbeetle format failed");
        let mut child = Command::new(&bin)
            .args(["start", "--addresses=0", &format!("--cache-grid={cache_grid}")])
            .args(dev)
            .arg(&file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tigerbeetle");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read tigerbeetle port");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("unexpected port line {line:?}"));
        // The server has the data file open now; unlinking it gives the space back when the
        // server exits, even for the per-binary server that is never dropped.
        std::fs::remove_file(&file).expect("unlink the data file");
        Server { port, child, _stdin: stdin, _dir: dir }
    }

    pub fn address(&self) -> String {
        self.port.to_string()
    }

    /// Freezes the server (SIGSTOP): requests reach its socket and wait there, as with a
    /// replica that stalls; the outage tests use it to make a ledger call time out.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Undoes [`Server::pause`]; queued requests are then processed.
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill").args([which, &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill {which} {pid} failed");
}

/// One server per test binary: tests isolate themselves by offering number instead.
/// `ALLOT_TB_PRODUCTION=1` makes it a production-mode server (full batches), for the
/// benchmark drivers that build on the test harness.
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("ALLOT_TB_PRODUCTION").as_deref() {
        Ok("1") => Server::start_with(false, "512MiB"),
        _ => Server::start(),
    })
}
