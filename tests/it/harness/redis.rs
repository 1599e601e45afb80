//! A `redis-server` per test, on a free loopback port, stopped by the PID the test started.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{DEADLINE, eventually_async, free_port};

/// A `redis-server` child process without persistence.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn redis_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

impl RedisServer {
    /// `None` (after saying so) when redis-server is not installed; CI installs it.
    pub async fn start() -> Option<Self> {
        let Some(binary) = redis_binary() else {
            println!("skipped: redis-server not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = Self {
            child: Self::spawn(&binary, port, &dir),
            port,
            dir,
        };
        server.wait_up().await;
        Some(server)
    }

    fn spawn(binary: &PathBuf, port: u16, dir: &tempfile::TempDir) -> Child {
        Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_up(&self) {
        let addr = self.addr();
        eventually_async("redis-server answers PING", || async move {
            tokio::task::spawn_blocking(move || ping(addr))
                .await
                .unwrap()
        })
        .await;
    }

    /// Kills the process this test started and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new, empty redis-server on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        let binary = redis_binary().expect("redis-server was there a moment ago");
        // The port was just released; binding it again can fail briefly, so retry.
        let start = Instant::now();
        loop {
            self.child = Self::spawn(&binary, self.port, &self.dir);
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.child.try_wait().unwrap().is_none() {
                break;
            }
            assert!(start.elapsed() < DEADLINE, "redis-server did not restart");
        }
        self.wait_up().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = StdStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}
