//! The HTTP side: `GET /metrics` (the OpenMetrics text format, which
//! Prometheus reads) and `GET /healthz`, over hyper's HTTP/1 server.
//! Scrapes are rare and small, so each connection gets a task and no
//! limits beyond hyper's own.

use crate::engine::Engine;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Binds the metrics address before the daemon reports ready, so a taken
/// port or a foreign address is a startup error rather than a silent gap.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot serve metrics on {addr} (daemon.metrics): {e}"))
}

/// Serves until `stop` is cancelled.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    tracing::warn!(error = %e, "metrics: cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let engine = engine.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &engine).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics: connection ended with an error");
            }
        });
    }
}

async fn answer(req: &Request<Incoming>, engine: &Engine) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => metrics(engine).await,
        "/healthz" => healthz(engine),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

async fn metrics(engine: &Engine) -> Response<Full<Bytes>> {
    let counts = match engine.state().counts_by_state().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot read file counts from the state database");
            let body = format!("cannot read the state database: {e}\n");
            return reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, body);
        }
    };
    let text = engine.metrics().encode(&counts, &engine.sessions_open());
    reply(StatusCode::OK, OPENMETRICS, text)
}

fn healthz(engine: &Engine) -> Response<Full<Bytes>> {
    let stale = engine.metrics().stale();
    if stale.is_empty() {
        return reply(StatusCode::OK, TEXT, "ok\n".into());
    }
    let mut body = String::new();
    for s in &stale {
        let since = if s.polled {
            "since its last successful poll"
        } else {
            "and it has not polled successfully yet"
        };
        body.push_str(&format!(
            "stale rule {}: {}s {since}\n",
            s.rule,
            s.late_for.as_secs()
        ));
    }
    reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, body)
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}
