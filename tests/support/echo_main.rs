//! `edgeward-echo [--listen 127.0.0.1:8080]`: the echo upstream for the demo run and docker-compose.

#[path = "echo.rs"]
#[allow(dead_code)]
mod echo;

use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut listen = String::from("127.0.0.1:8080");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            _ => {
                eprintln!("usage: edgeward-echo [--listen 127.0.0.1:8080]");
                return ExitCode::from(2);
            }
        }
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("edgeward-echo: bad --listen {listen:?}: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("edgeward-echo listening on {addr}");
    match echo::serve(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeward-echo: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
