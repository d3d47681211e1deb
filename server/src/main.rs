//! `ferrydb-server`: serves the sync protocol (and, in demo mode, the demo).

use ferrydb_protocol::AppDefinition;
use ferrydb_server::auth::jwks::JwksOptions;
use ferrydb_server::{serve, Auth, Config, ServerState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage: ferrydb-server --app FILE [options]
  --app FILE            the app definition (JSON) to serve; env FERRYDB_APP
  --store URL           sqlite:PATH (default sqlite:ferrydb-server.db), memory, or
                        postgres://USER@HOST:PORT/DB[?sslmode=require&sslrootcert=CA.pem]
                        (TLS certificates are always verified); env FERRYDB_STORE
  --jwt-secret SECRET   verify HS256 bearer JWTs; env FERRYDB_JWT_SECRET
  --jwt-public-key FILE verify RS256 bearer JWTs with this PEM public key
  --jwks-url URL        verify RS256/ES256 bearer JWTs with the key their kid names in
                        the identity provider's JWKS (cached, refetched on rotation)
  --jwt-issuer ISS      require the JWT claim iss to be ISS
  --jwt-audience AUD    require the JWT claim aud to include AUD (without it, a token
                        carrying aud is refused)
  --dev-auth            the bearer token is the user id (demo and tests only)
  --listen ADDR         address to bind (default 127.0.0.1:8787; port 0 picks a free one)
  --static DIR          serve a built demo site from DIR at /
  --demo                enable the /demo/* switches (fault injection, mutation log)
  --page-size N         rows per page of an initial sync (default 5000)
  --max-body BYTES      largest request body (default 4194304)
  --max-push N          most mutations per push (default 1000)
  --max-realtime N      most realtime connections (default 10000)
  --rate N              sync requests per second per user (default 50; 0 = no limit)
  --burst N             requests a user may make at once before --rate applies (default 200)
  --shutdown-grace SECS on SIGINT/SIGTERM, how long requests in flight may take to finish
                        (default 10); realtime streams end at once with a retry hint
Without --app only static files are served.

usage: ferrydb-server migrate --plan|--apply --app FILE --store URL
  --plan                print the changes from the store's tables to the app's, change nothing
  --apply               print them, then apply them all in one transaction, breaking ones
                        included (dropped tables and columns lose their data)
A starting server applies additive changes (new tables, new nullable columns) itself.";

struct Args {
    listen: SocketAddr,
    /// How long a graceful stop waits for requests in flight.
    shutdown_grace: Duration,
    config: Config,
    app: Option<PathBuf>,
    store: String,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        migrate(std::env::args().skip(2));
    }
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let app_def = args.app.as_deref().map(read_app);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        if let Err(e) = args.config.auth.prefetch().await {
            // Not fatal: the provider may be back before the first request.
            tracing::warn!(error = %e, "cannot fetch the JWKS at start; will retry on requests");
        }
        let store = args.store.clone();
        let state = ServerState::start(args.config, app_def.map(|a| (a, store.as_str())))
            .await
            .unwrap_or_else(|e| {
                eprintln!("cannot open the store {}: {e}", redact(&store));
                std::process::exit(1);
            });
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("cannot listen on {}: {e}", args.listen);
                std::process::exit(1);
            }
        };
        let addr = listener.local_addr().expect("local address");
        if let Some(store) = &state.store {
            tracing::info!(store = store.kind(), "serving the sync protocol at /sync");
        }
        // Tests and scripts read this line to learn the port.
        println!("ferrydb-server listening on http://{addr}/");
        serve(listener, state, stop_signal(), args.shutdown_grace)
            .await
            .expect("server failed");
        tracing::info!("stopped");
    });
}

/// The app definition at `path`, or exit.
fn read_app(path: &std::path::Path) -> AppDefinition {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("cannot read the app definition {}: {e}", path.display());
        std::process::exit(2);
    });
    AppDefinition::from_json(&text).unwrap_or_else(|e| {
        eprintln!("invalid app definition {}:\n{e}", path.display());
        std::process::exit(2);
    })
}

/// `ferrydb-server migrate --plan|--apply --app FILE --store URL`: prints
/// the plan, applies it with `--apply`, and exits.
fn migrate(mut args: impl Iterator<Item = String>) -> ! {
    let mut apply = None;
    let mut app = std::env::var_os("FERRYDB_APP").map(PathBuf::from);
    let mut store = std::env::var("FERRYDB_STORE").ok();
    let usage = |message: &str| -> ! {
        eprintln!("{message}\n{USAGE}");
        std::process::exit(2);
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plan" => apply = Some(false),
            "--apply" => apply = Some(true),
            "--app" => {
                app = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--app needs a value"))
                        .into(),
                )
            }
            "--store" => {
                store = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--store needs a value")),
                )
            }
            other => usage(&format!("unknown argument: {other}")),
        }
    }
    let (Some(apply), Some(app), Some(store)) = (apply, app, store) else {
        usage("migrate needs --plan or --apply, --app and --store");
    };
    let app = read_app(&app);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(ferrydb_server::store::migrate(&store, &app, apply)) {
        Ok(plan) => {
            let done = if apply {
                "applied"
            } else {
                "planned (nothing changed; apply with --apply)"
            };
            println!(
                "{} to schema version {}:\n{plan}{done}",
                redact(&store),
                app.version
            );
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("cannot migrate {}: {e}", redact(&store));
            std::process::exit(1);
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what container runtimes and
/// systemd send to stop a service).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}

/// A store URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: "127.0.0.1:8787".parse().expect("default address"),
        shutdown_grace: Duration::from_secs(10),
        config: Config::default(),
        app: std::env::var_os("FERRYDB_APP").map(PathBuf::from),
        store: std::env::var("FERRYDB_STORE").unwrap_or_else(|_| "sqlite:ferrydb-server.db".into()),
    };
    let (mut issuer, mut audience) = (None, None);
    let mut auth = match std::env::var("FERRYDB_JWT_SECRET") {
        Ok(secret) => Some(Auth::hs256(secret.as_bytes())?),
        Err(_) => None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, raw: String| {
            raw.parse::<usize>()
                .map_err(|_| format!("{name}: not a number: {raw}"))
        };
        let small =
            |name: &str, n: usize| u32::try_from(n).map_err(|_| format!("{name}: too large: {n}"));
        let limits = &mut parsed.config.limits;
        match arg.as_str() {
            "--listen" => {
                let raw = value("--listen")?;
                parsed.listen = raw
                    .parse()
                    .map_err(|_| format!("--listen: not an address: {raw}"))?;
            }
            "--app" => parsed.app = Some(PathBuf::from(value("--app")?)),
            "--store" => parsed.store = value("--store")?,
            "--dev-auth" => auth = Some(Auth::Dev),
            "--jwt-secret" => auth = Some(Auth::hs256(value("--jwt-secret")?.as_bytes())?),
            "--jwt-public-key" => {
                let path = value("--jwt-public-key")?;
                let pem = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
                auth = Some(Auth::rs256(&pem)?);
            }
            "--jwks-url" => auth = Some(Auth::jwks(&value("--jwks-url")?, JwksOptions::default())?),
            "--jwt-issuer" => issuer = Some(value("--jwt-issuer")?),
            "--jwt-audience" => audience = Some(value("--jwt-audience")?),
            "--static" => parsed.config.static_dir = Some(PathBuf::from(value("--static")?)),
            "--demo" => parsed.config.demo = true,
            "--page-size" => limits.page_size = number(&arg, value(&arg)?)?.max(1),
            "--max-body" => limits.body_bytes = number(&arg, value(&arg)?)?,
            "--max-push" => limits.push_batch = number(&arg, value(&arg)?)?,
            "--max-realtime" => limits.realtime_connections = number(&arg, value(&arg)?)?,
            "--rate" => limits.requests_per_second = small(&arg, number(&arg, value(&arg)?)?)?,
            "--shutdown-grace" => {
                parsed.shutdown_grace = Duration::from_secs(number(&arg, value(&arg)?)? as u64)
            }
            "--burst" => limits.request_burst = small(&arg, number(&arg, value(&arg)?)?)?,
            "-h" | "--help" => return Err("ferrydb-server".into()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    match auth {
        Some(auth) => {
            parsed.config.auth = auth.expecting(issuer.as_deref(), audience.as_deref())?
        }
        None if parsed.app.is_some() => {
            return Err(
                "choose how to authenticate: --jwt-secret, --jwt-public-key, \
                 --jwks-url or --dev-auth"
                    .into(),
            )
        }
        None => {}
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn jwks_issuer_audience_and_grace_flags_parse_and_odd_combinations_are_refused() {
        let args = parse(&[
            "--app",
            "app.json",
            "--jwks-url",
            "https://idp.example/.well-known/jwks.json",
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "app",
            "--shutdown-grace",
            "3",
        ])
        .unwrap();
        assert!(matches!(args.config.auth, Auth::Jwt(_)));
        assert_eq!(args.shutdown_grace, Duration::from_secs(3));
        let err = parse(&["--dev-auth", "--jwt-issuer", "x"]).err().unwrap();
        assert!(err.contains("--jwt-issuer"), "{err}");
        let err = parse(&["--jwks-url", "ftp://idp.example/keys"])
            .err()
            .unwrap();
        assert!(err.contains("not an http(s) URL"), "{err}");
    }
}
