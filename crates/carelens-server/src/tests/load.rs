//! The server on a real loopback socket under many concurrent clients: no call fails on
//! our side, and the budget is charged exactly for what was released.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::*;

/// An HTTP/1.1 answer: status, headers (lower-case names), body.
pub(super) struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTP/1.1 call on `stream` (`Connection: close`), read to its end.
pub(super) async fn http(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

/// The sample's catalog and files, copied to `dir`, with a response quantum of 1 ms (the
/// quantum holds every answer to a multiple of it, which hides running time; here it
/// would only slow the test).
pub(super) fn fast_catalog(dir: &Path) -> carelens_catalog::LoadedCatalog {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample-data");
    for entry in std::fs::read_dir(&sample).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let text = std::fs::read_to_string(sample.join("carelens.toml")).unwrap();
    assert!(text.contains("response_quantum_ms = 1000"));
    let path = dir.join("carelens.toml");
    std::fs::write(
        &path,
        text.replace("response_quantum_ms = 1000", "response_quantum_ms = 1"),
    )
    .unwrap();
    carelens_catalog::load(&path).unwrap()
}

/// What one call asked and got.
struct Call {
    kind: &'static str,
    sql: String,
    status: u16,
    code: String,
    body: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_five_hundred_calls_no_failure_and_the_budget_exact() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(
        Service::open(fast_catalog(dir.path()), &dir.path().join("ledger.sqlite"))
            .await
            .unwrap(),
    );
    let server = Server::new(
        Arc::clone(&service),
        ServerOptions {
            max_running: 8,
            max_waiting: 1000,
            ..quiet()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let token = service
        .issue_token("analyst", Duration::from_secs(3600))
        .await
        .unwrap()
        .secret;

    // 40 distinct new queries at ε 0.5 each, asked twice: the analyst's budget (10) pays
    // for exactly 20 of them. The total count asked 200 times more (after its first
    // release, answered again at no cost), 120 rejected queries and 100 explains.
    let mut work: Vec<(&'static str, String)> = Vec::new();
    for i in 0..40 {
        let sql = format!(
            "-- carelens: epsilon=0.5\nSELECT COUNT(*) AS n FROM person WHERE year_of_birth >= {}",
            1920 + i
        );
        work.push(("query", sql.clone()));
        work.push(("query", sql));
    }
    for _ in 0..200 {
        work.push((
            "query",
            "-- carelens: epsilon=0.5\nSELECT COUNT(*) AS n FROM person WHERE year_of_birth >= 1920"
                .to_owned(),
        ));
    }
    for i in 0..120 {
        work.push(("query", format!("SELECT person_id, {i} AS k FROM person")));
    }
    for _ in 0..100 {
        work.push((
            "explain",
            "SELECT sex, COUNT(*) AS n FROM person GROUP BY sex".to_owned(),
        ));
    }
    assert_eq!(work.len(), 500);
    // A fixed shuffle: a stride coprime with 500.
    let work: Vec<_> = (0..500).map(|i| work[(i * 37) % 500].clone()).collect();
    let queue = Arc::new(Mutex::new(work));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (queue, calls, token) = (Arc::clone(&queue), Arc::clone(&calls), token.clone());
            tokio::spawn(async move {
                loop {
                    let Some((kind, sql)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
                    let path = if kind == "query" {
                        "/api/v1/queries"
                    } else {
                        "/api/v1/explain"
                    };
                    let answer = http(
                        stream,
                        "POST",
                        path,
                        Some(&token),
                        Some(&json!({ "sql": sql })),
                    )
                    .await;
                    let code = if answer.status == 200 {
                        String::new()
                    } else {
                        answer.json()["error"]["code"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned()
                    };
                    calls.lock().unwrap().push(Call {
                        kind,
                        sql,
                        status: answer.status,
                        code,
                        body: answer.body,
                    });
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let calls = std::mem::take(&mut *calls.lock().unwrap());
    assert_eq!(calls.len(), 500);

    // No failure on our side; each call answered as its kind should be.
    for call in &calls {
        let expected: &[(u16, &str)] = match (call.kind, call.sql.contains("person_id")) {
            ("explain", _) => &[(200, "")],
            (_, true) => &[(422, "rejected")],
            _ => &[(200, ""), (403, "over_budget")],
        };
        assert!(
            expected.contains(&(call.status, call.code.as_str())),
            "{} {:?}: {} {}",
            call.kind,
            call.sql,
            call.status,
            call.code
        );
    }
    // Per distinct query: released once and answered again with the same bytes, or
    // refused every time (the budget only shrinks).
    let mut by_sql: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for call in calls
        .iter()
        .filter(|c| c.kind == "query" && !c.sql.contains("person_id"))
    {
        by_sql.entry(&call.sql).or_default().push(call);
    }
    assert_eq!(by_sql.len(), 40);
    let mut released = 0;
    for (sql, calls) in &by_sql {
        let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
        if statuses.iter().all(|&s| s == 200) {
            released += 1;
            assert!(calls.iter().all(|c| c.body == calls[0].body), "{sql}");
        } else {
            assert!(statuses.iter().all(|&s| s == 403), "{sql}: {statuses:?}");
        }
    }
    assert_eq!(released, 30, "exactly what the budget pays for");
    let lines = service
        .budget(&service.caller("analyst").unwrap())
        .await
        .unwrap();
    let own = lines.iter().find(|l| l.name == "analyst").unwrap();
    assert!((own.spent.epsilon_value() - 15.0).abs() < 1e-9, "{own:?}");

    // The log holds together: checked over the same socket.
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let check = http(stream, "GET", "/api/v1/audit/verify", Some(&token), None).await;
    assert_eq!(check.json()["intact"], true);

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the server stopped listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_from_one_address_are_answered_slowly() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(
        Service::open(fast_catalog(dir.path()), &dir.path().join("ledger.sqlite"))
            .await
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let server = Server::new(Arc::clone(&service), quiet());
    let serving = tokio::spawn(server.serve(listener, std::future::pending()));
    let mut waited = Vec::new();
    for _ in 0..5 {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let started = std::time::Instant::now();
        let answer = http(stream, "GET", "/api/v1/budget", Some("clt_wrong"), None).await;
        waited.push(started.elapsed());
        assert_eq!(answer.status, 401);
        assert_eq!(answer.json()["error"]["code"], "unauthenticated");
        assert_eq!(
            answer.headers.get("www-authenticate").map(String::as_str),
            Some("Bearer realm=\"carelens\"")
        );
        assert!(answer.headers.contains_key(crate::REQUEST_ID));
    }
    // The first three are answered at once; the fourth and fifth after 250 and 500 ms.
    assert!(waited[3] >= Duration::from_millis(250), "{waited:?}");
    assert!(waited[4] >= Duration::from_millis(500), "{waited:?}");
    // A valid token from the same address is not slowed.
    let token = service
        .issue_token("analyst", Duration::from_secs(60))
        .await
        .unwrap()
        .secret;
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let answer = http(stream, "GET", "/api/v1/budget", Some(&token), None).await;
    assert_eq!(answer.status, 200);
    serving.abort();
}
