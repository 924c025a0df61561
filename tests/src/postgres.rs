//! A private Postgres server for one test that must stop and start it (outage tests); every
//! other test shares the server `./ops/test` started.
//!
//! The server runs from Debian's binaries (`/usr/lib/postgresql/*/bin`, or
//! `ALLOT_PG_BIN`) with its data in a temporary folder; it is stopped when dropped. initdb
//! and postgres refuse to run as root, so as root they run as the `postgres` user, as
//! `ops/lib.sh` does.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug)]
pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

fn pg_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ALLOT_PG_BIN") {
        return bin.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's postgresql package (ops/lib.sh installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a Postgres with initdb")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl PrivatePostgres {
    /// initdb into a fresh folder and start on a free port, with a database `allot`.
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = PrivatePostgres { port, bin: pg_bin(), dir };
        if is_root() {
            let status =
                Command::new("chown").arg("-R").arg("postgres").arg(pg.dir.path()).status();
            assert!(status.unwrap().success(), "chown to postgres");
        }
        pg.run("initdb", &["-U", "allot", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]);
        pg.up();
        pg.run_client("createdb", &["allot"]);
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://allot@127.0.0.1:{}/allot", self.port)
    }

    /// Starts the stopped server again (same data, same port).
    pub fn up(&self) {
        let options =
            format!("-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off", self.port);
        let log = self.data().join("postgres.log");
        let log = log.to_str().unwrap();
        self.run("pg_ctl", &["-l", log, "-w", "-t", "60", "-o", &options, "start"]);
    }

    /// Stops the server at once (`-m immediate`): connections drop as in a crash.
    pub fn down(&self) {
        self.run("pg_ctl", &["-m", "immediate", "-w", "stop"]);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server tool on the data folder, as the `postgres` user when we are root.
    fn server_tool(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.arg("-D").arg(self.data());
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.server_tool(tool).args(args).output().expect(tool);
        assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn run_client(&self, tool: &str, args: &[&str]) {
        let port = self.port.to_string();
        let status = Command::new(self.bin.join(tool))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "allot"])
            .args(args)
            .status()
            .expect(tool);
        assert!(status.success(), "{tool} failed");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.server_tool("pg_ctl").args(["-m", "immediate", "stop"]).output();
    }
}
