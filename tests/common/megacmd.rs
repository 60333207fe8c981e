//! Running the `megacmd` binary in tests: its own home (config, session file), the test
//! server's URL, credentials from the environment, and a timeout on every invocation.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{Env, PASSWORD};

pub const BIN: &str = env!("CARGO_BIN_EXE_megacmd");

pub struct Cmd<'a> {
    pub env: &'a Env,
    pub email: Option<&'a str>,
    pub password: bool,
    pub home: PathBuf,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl<'a> Cmd<'a> {
    pub fn new(env: &'a Env, email: &'a str) -> Self {
        Self::in_home(env, email, &format!("home-{email}"))
    }

    /// With its own home (config dir, session file).
    pub fn in_home(env: &'a Env, email: &'a str, home: &str) -> Self {
        let home = env.dir.path().join(home);
        std::fs::create_dir_all(&home).unwrap();
        Cmd {
            env,
            email: Some(email),
            password: true,
            home,
        }
    }

    /// Its temporary folder (`TMPDIR`): inside its home, so tests can look at what it left.
    pub fn tmp(&self) -> PathBuf {
        self.home.join("tmp")
    }

    /// The command, ready to spawn (with a private `TMPDIR`, [`Cmd::tmp`]).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        std::fs::create_dir_all(self.tmp()).unwrap();
        let mut c = tokio::process::Command::new(BIN);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TMPDIR", self.tmp())
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("MEGA_API_URL", self.env.server.base_url())
            .kill_on_drop(true);
        if let Some(e) = self.email {
            c.env("MEGA_EMAIL", e);
        }
        if self.password {
            c.env("MEGA_PASSWORD", PASSWORD);
        }
        c
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        let mut c = self.command(args);
        let out = tokio::time::timeout(Duration::from_secs(120), c.output())
            .await
            .unwrap_or_else(|_| panic!("megacmd {args:?} timed out"))
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub async fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args).await;
        assert_eq!(
            o.code, 0,
            "megacmd {args:?} failed: {}{}",
            o.stdout, o.stderr
        );
        o
    }

    pub async fn fails(&self, args: &[&str], code: i32) -> Out {
        let o = self.run(args).await;
        assert_eq!(
            o.code, code,
            "megacmd {args:?}: expected exit {code}, got {}: {}{}",
            o.code, o.stdout, o.stderr
        );
        assert_eq!(
            o.stderr.trim().lines().count(),
            1,
            "one line on stderr: {:?}",
            o.stderr
        );
        assert!(!o.stderr.contains("panicked") && !o.stderr.contains("backtrace"));
        o
    }
}
