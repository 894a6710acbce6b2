//! Runs the `edgeward` command from tests: arguments, environment and standard input in; what it
//! printed and how it exited out. Used through `support::cli` by the end-to-end tests and included
//! on its own (`#[path = "support/cli.rs"] mod cli;`) by the CLI tests, which need nothing else of
//! the harness.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

/// `edgeward ARGS` with `envs` added to its environment and `stdin` written to it.
pub fn run<K, V>(args: &[&str], envs: impl IntoIterator<Item = (K, V)>, stdin: &[u8]) -> Output
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .args(args)
        .envs(envs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that stops before reading its input closes the pipe: not a test failure.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

/// No environment added (for [`run`], [`ok`] and [`quiet`]).
pub const NO_ENV: [(&str, &str); 0] = [];

/// The standard output of a run that must exit 0 (its standard error is shown when it does not).
pub fn ok<K, V>(args: &[&str], envs: impl IntoIterator<Item = (K, V)>, stdin: &[u8]) -> Vec<u8>
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    exited_0(args, run(args, envs, stdin)).stdout
}

/// As [`ok`], and nothing may be printed on standard error.
pub fn quiet<K, V>(args: &[&str], envs: impl IntoIterator<Item = (K, V)>, stdin: &[u8]) -> Vec<u8>
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let out = exited_0(args, run(args, envs, stdin));
    assert!(
        out.stderr.is_empty(),
        "edgeward {args:?}: {}",
        text(&out.stderr)
    );
    out.stdout
}

fn exited_0(args: &[&str], out: Output) -> Output {
    assert_eq!(
        out.status.code(),
        Some(0),
        "edgeward {args:?}: {}",
        text(&out.stderr)
    );
    out
}

/// Bytes as text, for messages (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
