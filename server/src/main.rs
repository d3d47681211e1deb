//! `ferrydb-server`: serves the sync protocol (and, in demo mode, the demo).

use ferrydb_server::{app, Config};
use std::net::SocketAddr;
use std::path::PathBuf;

const USAGE: &str = "usage: ferrydb-server [--listen ADDR] [--static DIR]
  --listen ADDR   address to bind (default 127.0.0.1:8787; port 0 picks a free one)
  --static DIR    serve a built demo site from DIR at /";

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let (listen, config) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        let addr = listener.local_addr().expect("local address");
        // Tests and scripts read this line to learn the port.
        println!("ferrydb-server listening on http://{addr}/");
        axum::serve(listener, app(&config))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .expect("server failed");
    });
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, Config), String> {
    let mut listen: SocketAddr = "127.0.0.1:8787".parse().expect("default address");
    let mut config = Config::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => {
                let raw = value("--listen")?;
                listen = raw
                    .parse()
                    .map_err(|_| format!("--listen: not an address: {raw}"))?;
            }
            "--static" => config.static_dir = Some(PathBuf::from(value("--static")?)),
            "-h" | "--help" => return Err("ferrydb-server".into()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok((listen, config))
}
