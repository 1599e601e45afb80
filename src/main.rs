//! The `edgeward` command: `run`, `check`, `probe`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use edgeward::config::{self, LogFormat};

/// mimalloc rather than glibc's allocator: a proxied request allocates and frees dozens of
/// small blocks (header maps, buffers, futures), and glibc's `_int_malloc`/`_int_free` and
/// consolidation showed as about 6% of the CPU of a small keep-alive request
/// (benches/README.md has the measurement).
#[global_allocator]
static ALLOCATOR: Mimalloc = Mimalloc;

/// mimalloc, asked for an alignment only when plain `mi_malloc`'s does not already satisfy
/// the layout. The `mimalloc` crate passes every layout to `mi_malloc_aligned`, whose fast
/// path covers only blocks up to 1 KiB: a larger block of a size that is not a power of two
/// (a header map's entries) then took the over-allocating path, about 200 instructions
/// instead of 40.
struct Mimalloc;

/// What `mi_malloc` guarantees for a block of at least this size (`MI_MAX_ALIGN_SIZE`).
const MI_MAX_ALIGN: usize = 16;

fn plain(align: usize, size: usize) -> bool {
    align <= MI_MAX_ALIGN && align <= size
}

// The binary's one `unsafe`: an allocator is an unsafe trait by definition. (The library's
// one, `http1::framing::known_valid`, builds header values it has already checked.)
#[allow(unsafe_code)]
// SAFETY: every block comes from mimalloc and goes back to it; a block from `mi_malloc` is
// aligned to `min(size, 16)` rounded down to a power of two, which `plain` checks against
// the layout, and the aligned calls handle every other layout.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        // SAFETY: plain FFI allocation calls; a null return is passed on as failure.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its
        // alignment by the same rule as `alloc`.
        unsafe {
            if plain(layout.align(), new_size) {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// An edge gateway: TLS, unspoofable forwarding headers, readiness-aware load balancing.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Config file.
        #[arg(
            long,
            short,
            default_value = "config/edgeward.toml",
            env = "EDGEWARD_CONFIG"
        )]
        config: PathBuf,
    },
    /// Run the gateway in front of a small built-in demo app (JSON echo, SSE ticker,
    /// WebSocket echo, health probes) listening on the `app` upstream's address; the shipped
    /// config also serves a built front end from `examples/demo-site`.
    Demo {
        /// Config file.
        #[arg(
            long,
            short,
            default_value = "config/edgeward.toml",
            env = "EDGEWARD_CONFIG"
        )]
        config: PathBuf,
    },
    /// Validate a config file and print every problem with file, line and key.
    Check {
        /// Config file.
        #[arg(
            long,
            short,
            default_value = "config/edgeward.toml",
            env = "EDGEWARD_CONFIG"
        )]
        config: PathBuf,
    },
    /// GET a URL and exit 0 on a 2xx answer, 1 otherwise (for container HEALTHCHECKs, where
    /// there is no shell or curl).
    Probe {
        /// For example `http://127.0.0.1:9901/health/ready`.
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { config } => match config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            let Some((cfg, source)) = load(&config) else {
                return ExitCode::FAILURE;
            };
            match runtime(cfg.server.workers).and_then(|rt| {
                rt.block_on(edgeward::app::run(cfg, source))
                    .context("edgeward stopped")
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { config } => {
            let Some((cfg, source)) = load(&config) else {
                return ExitCode::FAILURE;
            };
            match runtime(cfg.server.workers).and_then(|rt| rt.block_on(demo(cfg, source))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Probe { url, timeout } => {
            let outcome = runtime(1).and_then(|rt| {
                rt.block_on(edgeward::probe::get(&url, Duration::from_secs(timeout)))
                    .map_err(Into::into)
            });
            match outcome {
                Ok(status) if status.is_success() => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("{url}: {status}");
                    ExitCode::FAILURE
                }
                Err(err) => {
                    eprintln!("{url}: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Loads the config for `run` and `demo`, printing every problem (the same verdict as
/// `check`), and starts logging as it says. The source text is kept so a reload can tell an
/// unchanged file.
fn load(path: &std::path::Path) -> Option<(config::Config, edgeward::reload::Source)> {
    match edgeward::reload::load_initial(path) {
        Ok((cfg, source)) => {
            init_tracing(cfg.log.format, &cfg.log.level);
            Some((cfg, source))
        }
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

/// Starts the demo app on the `app` upstream's first replica, prints where to look, and runs
/// the gateway.
async fn demo(cfg: config::Config, source: edgeward::reload::Source) -> anyhow::Result<()> {
    let replica = cfg
        .upstreams
        .get("app")
        .and_then(|u| u.replicas.first())
        .context("the demo needs an upstream named \"app\" (the shipped config has one)")?;
    let addr: std::net::SocketAddr = format!("{}:{}", replica.host, replica.port)
        .parse()
        .context("the demo app listens on the `app` upstream's first replica, which must be an IP address")?;
    let listener = edgeward::demo::bind(addr)
        .await
        .with_context(|| format!("cannot bind the demo app on {addr}"))?;
    tokio::spawn(edgeward::demo::serve(listener));
    println!("edgeward demo: the demo app listens on {addr}; the gateway is in front of it:");
    for l in &cfg.listeners {
        let base = format!(
            "{}://localhost:{}",
            if l.tls { "https" } else { "http" },
            l.addr.port()
        );
        // The front end first: it is where a newcomer starts.
        let statics = cfg
            .routes
            .iter()
            .filter(|r| matches!(r.action, config::Action::Static(_)));
        let others = cfg
            .routes
            .iter()
            .filter(|r| !matches!(r.action, config::Action::Static(_)));
        for (path, what) in statics.chain(others).flat_map(demo_links) {
            println!("  {:<42} {what}", format!("{base}{path}"));
        }
    }
    if let Some(asset) = cfg.routes.iter().find_map(demo_asset) {
        println!("  see both cache policies:");
        if let Some(plain) = cfg.listeners.iter().find(|l| !l.tls) {
            let port = plain.addr.port();
            println!("    curl -I http://localhost:{port}/{asset}   # immutable, one year");
            println!("    curl -I http://localhost:{port}/robots.txt   # no-cache + ETag");
        }
    }
    if cfg.listeners.iter().any(|l| l.tls) {
        println!("  (HTTPS uses a self-signed certificate: curl -k, or accept it in the browser)");
    }
    println!(
        "  http://{}/health/ready   the gateway's readiness (admin listener)",
        cfg.admin.addr
    );
    edgeward::app::run(cfg, source)
        .await
        .context("edgeward stopped")
}

/// What the demo prints for a route of the shipped config: the static front end, or the
/// demo app's pages below the route's path.
fn demo_links(route: &config::Route) -> Vec<(String, &'static str)> {
    match &route.action {
        config::Action::Static(_) => vec![(
            route.path.clone(),
            "front end served by edgeward (hashed assets, SPA fallback)",
        )],
        config::Action::Proxy { upstream } if upstream == "app" => {
            let base = if route.strip_prefix {
                route.path.trim_end_matches('/')
            } else {
                ""
            };
            vec![
                (
                    format!("{base}/echo"),
                    "what the app received (forwarding headers)",
                ),
                (format!("{base}/events"), "server-sent events"),
            ]
        }
        _ => Vec::new(),
    }
}

/// A content-hashed asset of the demo site, named in its build manifest.
fn demo_asset(route: &config::Route) -> Option<String> {
    let config::Action::Static(site) = &route.action else {
        return None;
    };
    let manifest = std::fs::read(site.root.join(".vite/manifest.json")).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&manifest).ok()?;
    let file = value.get("index.html")?.get("file")?.as_str()?;
    let prefix = route.path.trim_end_matches('/');
    Some(
        format!("{}/{file}", prefix)
            .trim_start_matches('/')
            .to_owned(),
    )
}

/// The async runtime for `server.workers`: one thread runs a single-threaded runtime, which
/// costs less per request than a work-stealing pool of one (no cross-thread wake-ups); more
/// threads run the multi-threaded runtime, and 0 one thread per CPU (tokio's default, which
/// `TOKIO_WORKER_THREADS` overrides).
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 1 {
            b.worker_threads(workers);
        }
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: escape codes in a file, journald or `docker logs` are noise
    // and break `grep key=value`.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
