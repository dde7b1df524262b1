//! A closed-loop HTTP/1.1 load generator: N keep-alive connections, each
//! sending one request and reading its response before the next, for a
//! bounded time. Requests are pre-encoded bytes; responses are parsed just
//! enough to find their end (status line, headers, `Content-Length`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a single request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that fails this often gives up (the run then reports errors).
const MAX_ERRORS_PER_CONNECTION: u64 = 100;

/// What to send, how hard and for how long.
#[derive(Clone, Debug)]
pub struct Load {
    pub addr: SocketAddr,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What one load run measured (after the warm-up only).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Responses with status 200 completed inside the measured window.
    pub ok: u64,
    /// Non-200 responses, I/O errors and time-outs (whole run).
    pub errors: u64,
    /// Latency of each measured request, sorted.
    pub latencies: Vec<Duration>,
    /// Length of the measured window.
    pub window: Duration,
    /// Size of the last 200 response body.
    pub body_len: usize,
}

/// `GET path` with the headers every target gets (the bare handler ignores the token).
pub fn get_request(addr: SocketAddr, path: &str, token: Option<&str>) -> Arc<[u8]> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nUser-Agent: strata-bench\r\n"
    );
    if let Some(t) = token {
        req.push_str("Authorization: Bearer ");
        req.push_str(t);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes().into()
}

/// Runs `load` with `request` on every connection and collects the figures.
pub async fn run(load: &Load, request: Arc<[u8]>) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load.connections {
        let request = request.clone();
        let addr = load.addr;
        tasks.spawn(async move { connection(addr, &request, measure_from, end).await });
    }
    let mut out = Outcome {
        window: load.duration,
        ..Outcome::default()
    };
    while let Some(res) = tasks.join_next().await {
        let c = res.context("a load connection panicked")??;
        out.ok += c.ok;
        out.errors += c.errors;
        out.latencies.extend(c.latencies);
        out.body_len = out.body_len.max(c.body_len);
    }
    out.latencies.sort_unstable();
    Ok(out)
}

/// One request on a fresh connection: the status and the body.
pub async fn once(addr: SocketAddr, request: &[u8]) -> anyhow::Result<(u16, bytes::Bytes)> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.write_all(request).await?;
    let mut buf = Vec::new();
    let fetch = async {
        loop {
            if let Some((head_len, head, content_length)) = parse_head(&buf)? {
                while buf.len() < head_len + content_length {
                    read_more(&mut s, &mut buf).await?;
                }
                let body = bytes::Bytes::copy_from_slice(&buf[head_len..head_len + content_length]);
                return anyhow::Ok((head.status, body));
            }
            read_more(&mut s, &mut buf).await?;
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fetch)
        .await
        .context("no response in time")?
}

#[derive(Default)]
struct ConnOutcome {
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
    body_len: usize,
}

async fn connection(
    addr: SocketAddr,
    request: &[u8],
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<ConnOutcome> {
    let mut out = ConnOutcome::default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    while Instant::now() < end {
        if out.errors >= MAX_ERRORS_PER_CONNECTION {
            break;
        }
        let s = if let Some(s) = stream.as_mut() {
            s
        } else {
            let s = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            s.set_nodelay(true)?;
            buf.clear();
            stream.insert(s)
        };
        let t0 = Instant::now();
        let res = tokio::time::timeout(REQUEST_TIMEOUT, exchange(s, request, &mut buf)).await;
        let Ok(Ok(Response {
            status,
            body_len,
            keep_alive,
        })) = res
        else {
            out.errors += 1;
            stream = None;
            continue;
        };
        let done = Instant::now();
        if status == 200 {
            out.body_len = body_len;
            if done >= measure_from && done < end {
                out.ok += 1;
                out.latencies.push(done - t0);
            }
        } else {
            out.errors += 1;
        }
        if !keep_alive {
            stream = None;
        }
    }
    Ok(out)
}

struct Response {
    status: u16,
    body_len: usize,
    keep_alive: bool,
}

/// Writes one request and reads exactly one response from `s`.
async fn exchange(
    s: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<Response> {
    s.write_all(request).await?;
    loop {
        if let Some((head_len, res, content_length)) = parse_head(buf)? {
            let total = head_len + content_length;
            while buf.len() < total {
                read_more(s, buf).await?;
            }
            buf.drain(..total);
            return Ok(Response {
                status: res.status,
                body_len: content_length,
                keep_alive: res.keep_alive,
            });
        }
        read_more(s, buf).await?;
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    buf.reserve(16 * 1024);
    if s.read_buf(buf).await? == 0 {
        bail!("the server closed the connection");
    }
    Ok(())
}

struct Head {
    status: u16,
    keep_alive: bool,
}

/// The response head in `buf`, if complete: its length, status and body length.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(usize, Head, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = res.parse(buf)? else {
        return Ok(None);
    };
    let mut content_length = None;
    let mut keep_alive = res.version == Some(1);
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by this load generator");
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep_alive = !h.value.eq_ignore_ascii_case(b"close");
        }
    }
    let Some(content_length) = content_length else {
        bail!("a response without Content-Length");
    };
    Ok(Some((
        head_len,
        Head {
            status: res.code.unwrap_or(0),
            keep_alive,
        },
        content_length,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_head_and_waits_for_an_incomplete_one() {
        let full =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let (len, head, body) = parse_head(full).ok().flatten().unwrap_or((
            0,
            Head {
                status: 0,
                keep_alive: false,
            },
            0,
        ));
        assert_eq!(
            (len, head.status, head.keep_alive, body),
            (full.len() - 2, 200, true, 2)
        );
        assert!(matches!(parse_head(&full[..20]), Ok(None)));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).is_err());
    }
}
