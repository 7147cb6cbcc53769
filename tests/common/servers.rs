//! Private MariaDB and Redis servers on free ports, for tests that stop and
//! start them (never the shared ones on 3306/6379). Copies of the helpers in
//! tests/ingest.rs and tests/control.rs, public for the other modules.

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A private MariaDB server this test may stop and start without disturbing
/// the others (they share the system one on 3306).
pub struct PrivateMariaDb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateMariaDb {
    pub fn start() -> PrivateMariaDb {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = dir.path().join("data");
        let st = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--user=root",
                "--skip-test-db",
                &format!("--datadir={}", data.display()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("mariadb-install-db (apt-get install mariadb-server)");
        assert!(st.success());
        let mut db = PrivateMariaDb { dir, port, child: None };
        db.run();
        db
    }

    pub fn run(&mut self) {
        let data = self.dir.path().join("data");
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                &format!("--datadir={}", data.display()),
                &format!("--port={}", self.port),
                "--bind-address=127.0.0.1",
                &format!("--socket={}", self.dir.path().join("sock").display()),
                &format!("--pid-file={}", self.dir.path().join("pid").display()),
                // Its own tmpdir: a starting mariadbd deletes every #sql* file in its
                // tmpdir, which would pull temp tables from under the shared server.
                &format!("--tmpdir={}", self.dir.path().display()),
                "--innodb-buffer-pool-size=64M",
                "--skip-log-bin",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "private MariaDB did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn server_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis server of this test's own, on a free port, without persistence.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// A free port, nothing running on it yet ([`PrivateRedis::restart`] starts it).
    pub fn on_free_port() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        PrivateRedis { port, child: None }
    }

    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = PrivateRedis { port, child: None };
        r.restart();
        r
    }

    /// Starts (again) on the same port, empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (bash scripts/services.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
