//! Benchmark: `carelens serve` under concurrent clients on loopback.
//!
//! The server (carelens-server over carelens-service, as `carelens serve` runs it) serves
//! the committed 20,000-person sample on 127.0.0.1; N clients (1, 8, 64) each send calls
//! one after another over fresh HTTP/1.1 connections, and for each kind of call the
//! benchmark reports calls per second and the 50th and 99th percentile latency:
//!
//! - **cached**: the same query again (answered from the ledger at no cost);
//! - **new**: a query never asked before (analysed, charged, run, stored);
//! - **rejected**: a query the analysis refuses (logged, nothing spent);
//!
//! and, as the yardstick, **plain**: the new query's SQL without its DP directive in a
//! plain DataFusion session over the same Parquet files, in process, one at a time.
//!
//! The catalog is the sample's with two changes, both written into a temporary copy: the
//! response quantum is 1 ms instead of 1 s (the quantum holds every answer to a multiple
//! of it to hide running time; at 1 s it is the latency floor of every query by design,
//! and would be all this measured), and the analyst's and the dataset's budgets are large
//! enough for every new query.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/bench-target cargo bench --bench server
//! ```
//!
//! `CARELENS_BENCH_CALLS` sets the calls per kind and client count (default 200).

#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use carelens_server::{LogFormat, Server, ServerOptions};
use carelens_service::Service;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENTS: [usize; 3] = [1, 8, 64];
const QUERY: &str =
    "SELECT sex, COUNT(*) AS n FROM person WHERE year_of_birth >= 1950 GROUP BY sex";

fn main() {
    let calls: usize = std::env::var("CARELENS_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(calls));
}

async fn bench(calls: usize) {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&sample).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let text = std::fs::read_to_string(sample.join("carelens.toml"))
        .unwrap()
        .replace("response_quantum_ms = 1000", "response_quantum_ms = 1")
        .replace("dataset_epsilon = 20.0", "dataset_epsilon = 1000000.0")
        .replace("epsilon = 10.0", "epsilon = 1000000.0");
    std::fs::write(dir.path().join("carelens.toml"), text).unwrap();
    let catalog = carelens_catalog::load(&dir.path().join("carelens.toml")).unwrap();
    let service = Arc::new(
        Service::open(catalog, &dir.path().join("ledger.sqlite"))
            .await
            .unwrap(),
    );
    let token = service
        .issue_token("analyst", Duration::from_secs(3600))
        .await
        .unwrap()
        .secret;
    let options = ServerOptions {
        max_running: 8,
        max_waiting: 1024,
        log_format: LogFormat::Off,
        ..ServerOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        Server::new(Arc::clone(&service), options).serve(listener, std::future::pending()),
    );

    let plain = plain_latency(&sample).await;
    println!(
        "carelens serve on loopback, 20,000-person sample, {calls} calls per row; plain DataFusion \
         (in process, one at a time) p50 {:.1} ms\n",
        plain.as_secs_f64() * 1e3
    );
    println!(
        "| kind | clients | calls/s | p50 ms | p99 ms | p50 / plain |\n|---|---:|---:|---:|---:|---:|"
    );
    let fresh = Arc::new(AtomicUsize::new(0));
    // Warm the cached query once.
    let cached_sql = format!("-- carelens: epsilon=0.1\n{QUERY}");
    let (status, _) = post(address, &token, &cached_sql).await;
    assert_eq!(status, 200);
    for clients in CLIENTS {
        for kind in ["cached", "new", "rejected"] {
            let (rate, p50, p99) = load(address, &token, kind, clients, calls, &fresh).await;
            println!(
                "| {kind} | {clients} | {rate:.0} | {:.1} | {:.1} | {:.1}× |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                p50.as_secs_f64() / plain.as_secs_f64()
            );
        }
    }
}

/// The median of 20 runs of the new query's SQL in plain DataFusion.
async fn plain_latency(sample: &Path) -> Duration {
    let ctx = SessionContext::new();
    ctx.register_parquet(
        "person",
        sample.join("person.parquet").to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        ctx.sql(QUERY).await.unwrap().collect().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// `calls` calls of `kind` from `clients` clients; calls per second, p50 and p99.
async fn load(
    address: SocketAddr,
    token: &str,
    kind: &'static str,
    clients: usize,
    calls: usize,
    fresh: &Arc<AtomicUsize>,
) -> (f64, Duration, Duration) {
    let left = Arc::new(AtomicUsize::new(calls));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (left, fresh, token) = (Arc::clone(&left), Arc::clone(fresh), token.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let sql = match kind {
                        "cached" => format!("-- carelens: epsilon=0.1\n{QUERY}"),
                        "new" => {
                            // A new ε makes a new question: never answered before.
                            let n = fresh.fetch_add(1, Ordering::SeqCst) + 1;
                            format!("-- carelens: epsilon={}\n{QUERY}", 0.1 + n as f64 * 1e-6)
                        }
                        _ => "SELECT person_id, year_of_birth FROM person".to_owned(),
                    };
                    let begun = Instant::now();
                    let (status, body) = post(address, &token, &sql).await;
                    latencies.push(begun.elapsed());
                    let expected = if kind == "rejected" { 422 } else { 200 };
                    assert_eq!(
                        status,
                        expected,
                        "{kind}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (latencies.len() as f64 / elapsed, at(0.5), at(0.99))
}

/// `POST /api/v1/queries` over a fresh connection; the status and body.
async fn post(address: SocketAddr, token: &str, sql: &str) -> (u16, Vec<u8>) {
    let body = serde_json::json!({ "sql": sql }).to_string();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /api/v1/queries HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&bytes[..split])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (status, bytes[split + 4..].to_vec())
}
