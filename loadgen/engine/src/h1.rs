//! HTTP/1.1 spoken inline on an owned [`Stream`], plain TCP or TLS (any byte stream in
//! tests): the request is serialized once into a
//! [`Template`] (only the two per-request trace headers are patched in place, and a metric
//! probe's header inserted), written with
//! one `write_all`, and the response is read into a per-connection buffer and parsed with
//! `httparse` (head) and by hand (Content-Length, chunked, read-until-close bodies). No
//! connection task, no channel, no `HeaderMap` per response.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use echo_server::contract::{PROBE_HEADER, REPLICA_HEADER, TRACEPARENT};

use crate::client::ErrorCause;
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Largest response head (status line and headers) accepted, and the bound on one chunk-size
/// line and on a chunked body's trailer section.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted (hyper's default too).
const MAX_HEADERS: usize = 100;
/// Read buffer size per connection (grows only while a head or chunk line is incomplete).
const READ_BUF: usize = 8 * 1024;
const TRACEPARENT_LEN: usize = 55;
const REQUEST_ID_LEN: usize = 32;
const CLOSED_EARLY: &str = "connection closed before message completed";

/// A request serialized once; per request only the trace headers' values change.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    bytes: Box<[u8]>,
    traceparent_at: usize,
    request_id_at: usize,
    /// A `HEAD` request: the response has no body whatever its headers say.
    head: bool,
}

impl Template {
    /// Serializes `method path HTTP/1.1`, `headers` (in map order, without any
    /// `traceparent`/`x-request-id`, which are appended as placeholders), and `body`.
    pub(crate) fn new(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Self {
        let mut b = Vec::with_capacity(64 + path.len() + 64 * headers.len() + body.len());
        b.extend_from_slice(method.as_str().as_bytes());
        b.push(b' ');
        b.extend_from_slice(path.as_bytes());
        b.extend_from_slice(b" HTTP/1.1\r\n");
        for (k, v) in headers {
            if k == TRACEPARENT || k == "x-request-id" {
                continue;
            }
            b.extend_from_slice(k.as_str().as_bytes());
            b.extend_from_slice(b": ");
            b.extend_from_slice(v.as_bytes());
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(TRACEPARENT.as_str().as_bytes());
        b.extend_from_slice(b": ");
        let traceparent_at = b.len();
        b.extend_from_slice(&[b'0'; TRACEPARENT_LEN]);
        b.extend_from_slice(b"\r\nx-request-id: ");
        let request_id_at = b.len();
        b.extend_from_slice(&[b'0'; REQUEST_ID_LEN]);
        b.extend_from_slice(b"\r\n\r\n");
        b.extend_from_slice(body);
        Self {
            bytes: b.into_boxed_slice(),
            traceparent_at,
            request_id_at,
            head: method == Method::HEAD,
        }
    }

    /// Bytes on the wire per request.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// A complete response.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// The response head was complete.
    pub(crate) head: Instant,
    /// The first non-empty body bytes arrived (`None`: no body).
    pub(crate) first_data: Option<Instant>,
    /// The last byte arrived.
    pub(crate) end: Instant,
    /// Head bytes plus body payload bytes.
    pub(crate) received: u64,
    /// The connection may carry another request.
    pub(crate) reusable: bool,
    /// The replica that answered, as its `x-ricochet-replica` header named it.
    pub(crate) replica: Option<Arc<str>>,
}

/// Why an exchange failed, with the cause it is counted under.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The connection closed or reset before any response byte arrived: on a kept-alive
    /// connection, the server closed it meanwhile, and the request may be retried.
    #[error("{detail}")]
    Stale {
        /// Why, as counted.
        cause: ErrorCause,
        /// What happened.
        detail: String,
    },
    /// Anything else (the connection must be dropped).
    #[error("{detail}")]
    Broken {
        /// Why, as counted.
        cause: ErrorCause,
        /// What happened.
        detail: String,
    },
}

impl Error {
    /// A failed read or write: retryable (`Stale`) when no response byte had arrived.
    fn io(e: &std::io::Error, got_any: bool) -> Self {
        let (cause, detail) = (ErrorCause::of_io(e), describe_io(e));
        if got_any {
            Error::Broken { cause, detail }
        } else {
            Error::Stale { cause, detail }
        }
    }

    /// The peer closed the connection before the response was complete.
    fn closed_early(got_any: bool) -> Self {
        let (cause, detail) = (ErrorCause::Reset, CLOSED_EARLY.to_owned());
        if got_any {
            Error::Broken { cause, detail }
        } else {
            Error::Stale { cause, detail }
        }
    }

    /// The response is not valid HTTP/1.1.
    fn protocol(detail: impl Into<String>) -> Self {
        Error::Broken {
            cause: ErrorCause::Protocol,
            detail: detail.into(),
        }
    }

    /// The cause the failure is counted under.
    #[cfg(test)]
    pub(crate) fn cause(&self) -> ErrorCause {
        match self {
            Error::Stale { cause, .. } | Error::Broken { cause, .. } => *cause,
        }
    }
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// A connection's byte stream: plain TCP, or TLS over TCP (boxed: rustls' state is large,
/// and a plain connection pays only the branch).
pub(crate) enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One HTTP/1.1 connection with its reusable buffers.
pub(crate) struct Conn<S = Stream> {
    stream: S,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Unconsumed bytes are `rbuf[pos..filled]`.
    pos: usize,
    filled: usize,
    /// Any byte of the current response was read.
    got_any: bool,
    /// The replica named by the last response, reused while it names the same one.
    replica: Option<Arc<str>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.stream.tcp().peer_addr().ok())
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Whether the peer closed (or wrote to) this connection while it sat idle: a
    /// non-blocking read finds end of stream, an error or bytes nobody asked for. No system
    /// call unless the socket was reported readable. Over TLS the probe reads the socket
    /// under the TLS layer: any record that arrived unasked (a `close_notify`) drops the
    /// connection just the same.
    pub(crate) fn closed_while_idle(&mut self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.stream.tcp().try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a connected stream.
    pub(crate) fn new(stream: S) -> Self {
        Self {
            stream,
            wbuf: Vec::new(),
            rbuf: vec![0; READ_BUF],
            pos: 0,
            filled: 0,
            got_any: false,
            replica: None,
        }
    }

    /// Sends `req` with the given `traceparent` and `x-request-id` values (and the metric
    /// probe header for a probe) and reads the whole response.
    pub(crate) async fn exchange(
        &mut self,
        req: &Template,
        traceparent: &[u8; TRACEPARENT_LEN],
        request_id: &[u8; REQUEST_ID_LEN],
        probe: Option<u16>,
    ) -> Result<Response, Error> {
        self.wbuf.clear();
        self.wbuf.extend_from_slice(&req.bytes);
        self.wbuf[req.traceparent_at..req.traceparent_at + TRACEPARENT_LEN]
            .copy_from_slice(traceparent);
        self.wbuf[req.request_id_at..req.request_id_at + REQUEST_ID_LEN]
            .copy_from_slice(request_id);
        if let Some(slot) = probe {
            // After the request id's line, before the blank line that ends the head.
            let at = req.request_id_at + REQUEST_ID_LEN + 2;
            let line = format!("{PROBE_HEADER}: {slot}\r\n");
            self.wbuf.splice(at..at, line.bytes());
        }
        self.got_any = false;
        if let Err(e) = self.stream.write_all(&self.wbuf).await {
            return Err(Error::io(&e, false));
        }
        // TLS may hold records back until flushed; a no-op for plain TCP.
        if let Err(e) = self.stream.flush().await {
            return Err(Error::io(&e, false));
        }
        let (status, framing, mut reusable, head_len, head, replica) =
            self.read_head(req.head).await?;
        let mut body = Body {
            received: 0,
            first_data: None,
        };
        match framing {
            Framing::None => {}
            Framing::Length(n) => self.read_exact_body(n, &mut body).await?,
            Framing::Chunked => self.read_chunked(&mut body).await?,
            Framing::Close => {
                reusable = false;
                self.read_to_close(&mut body).await?;
            }
        }
        let end = Instant::now();
        // Bytes beyond the response (never asked for): do not trust the connection.
        reusable &= self.pos == self.filled;
        self.pos = 0;
        self.filled = 0;
        Ok(Response {
            status,
            head,
            first_data: body.first_data,
            end,
            received: head_len as u64 + body.received,
            reusable,
            replica,
        })
    }

    /// Reads more bytes after `rbuf[..filled]`; `Ok(false)` at end of stream.
    async fn fill(&mut self) -> Result<bool, Error> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        } else if self.filled == self.rbuf.len() {
            if self.pos > 0 {
                self.rbuf.copy_within(self.pos..self.filled, 0);
                self.filled -= self.pos;
                self.pos = 0;
            } else {
                let grown = (self.rbuf.len() * 2).min(MAX_HEAD + READ_BUF);
                self.rbuf.resize(grown, 0);
            }
        }
        match self.stream.read(&mut self.rbuf[self.filled..]).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.filled += n;
                self.got_any = true;
                Ok(true)
            }
            Err(e) => Err(Error::io(&e, self.got_any)),
        }
    }

    /// Reads more, failing at end of stream.
    async fn fill_or_fail(&mut self) -> Result<(), Error> {
        if self.fill().await? {
            Ok(())
        } else {
            Err(Error::closed_early(self.got_any))
        }
    }

    /// Reads and parses the response head (skipping interim 1xx responses): status,
    /// body framing, whether the connection stays open, head length, and when it completed.
    #[allow(clippy::type_complexity)]
    async fn read_head(
        &mut self,
        head_request: bool,
    ) -> Result<(u16, Framing, bool, usize, Instant, Option<Arc<str>>), Error> {
        let mut head_len = 0;
        loop {
            if self.filled > self.pos {
                match parse_head(&self.rbuf[self.pos..self.filled], head_request)? {
                    Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                        self.pos += h.len;
                        head_len += h.len;
                        continue;
                    }
                    Some(h) => {
                        let at = Instant::now();
                        if let Some((from, len)) = h.replica {
                            let name = &self.rbuf[self.pos + from..self.pos + from + len];
                            if self.replica.as_deref().map(str::as_bytes) != Some(name) {
                                self.replica = std::str::from_utf8(name).ok().map(Arc::from);
                            }
                        }
                        self.pos += h.len;
                        return Ok((
                            h.status,
                            h.framing,
                            h.keep_alive,
                            head_len + h.len,
                            at,
                            h.replica.and(self.replica.clone()),
                        ));
                    }
                    None if self.filled - self.pos >= MAX_HEAD => {
                        return Err(Error::protocol(format!(
                            "response head exceeds {} KiB",
                            MAX_HEAD / 1024
                        )));
                    }
                    None => {}
                }
            }
            self.fill_or_fail().await?;
        }
    }

    async fn read_exact_body(&mut self, mut left: u64, body: &mut Body) -> Result<(), Error> {
        loop {
            let n = left.min((self.filled - self.pos) as u64);
            if n > 0 {
                body.data(n);
                self.pos += n as usize;
                left -= n;
            }
            if left == 0 {
                return Ok(());
            }
            self.fill_or_fail().await?;
        }
    }

    async fn read_chunked(&mut self, body: &mut Body) -> Result<(), Error> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.rbuf[self.pos..self.filled]) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.pos += used;
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.filled - self.pos < MAX_HEAD => {
                        self.fill_or_fail().await?;
                    }
                    Ok(httparse::Status::Partial) => {
                        return Err(Error::protocol("chunk size line too long"));
                    }
                    Err(_) => return Err(Error::protocol("invalid chunk size")),
                }
            };
            if size == 0 {
                return self.skip_trailers().await;
            }
            self.read_exact_body(size, body).await?;
            while self.filled - self.pos < 2 {
                self.fill_or_fail().await?;
            }
            if &self.rbuf[self.pos..self.pos + 2] != b"\r\n" {
                return Err(Error::protocol("invalid chunk: missing CRLF after data"));
            }
            self.pos += 2;
        }
    }

    /// Skips the trailer section after the last chunk, up to and including its blank line.
    async fn skip_trailers(&mut self) -> Result<(), Error> {
        let mut seen = 0;
        loop {
            let buffered = &self.rbuf[self.pos..self.filled];
            if let Some(i) = buffered.windows(2).position(|w| w == b"\r\n") {
                self.pos += i + 2;
                if i == 0 {
                    return Ok(());
                }
                seen += i + 2;
                if seen > MAX_HEAD {
                    return Err(Error::protocol("chunked trailers too long"));
                }
                continue;
            }
            if seen + buffered.len() > MAX_HEAD {
                return Err(Error::protocol("chunked trailers too long"));
            }
            self.fill_or_fail().await?;
        }
    }

    async fn read_to_close(&mut self, body: &mut Body) -> Result<(), Error> {
        loop {
            let n = self.filled - self.pos;
            if n > 0 {
                body.data(n as u64);
                self.pos = self.filled;
            }
            if !self.fill().await? {
                return Ok(());
            }
        }
    }
}

/// Body bytes seen so far.
struct Body {
    received: u64,
    first_data: Option<Instant>,
}

impl Body {
    fn data(&mut self, n: u64) {
        self.received += n;
        if self.first_data.is_none() && n > 0 {
            self.first_data = Some(Instant::now());
        }
    }
}

/// A parsed response head.
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    len: usize,
    /// Where the `x-ricochet-replica` value lies in the head: offset and length.
    replica: Option<(usize, usize)>,
}

/// Parses a response head from `buf`; `None` while incomplete.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, Error> {
    let malformed =
        |why: &dyn std::fmt::Display| Error::protocol(format!("malformed response head: {why}"));
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(malformed(&e)),
    };
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut replica = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case(REPLICA_HEADER) {
            let from = h.value.as_ptr() as usize - buf.as_ptr() as usize;
            replica = Some((from, h.value.len()));
            continue;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| malformed(&"invalid content-length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(malformed(&"conflicting content-length headers"));
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides: chunked, or read until close.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if let Some(chunked) = chunked {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok(Some(Head {
        status,
        framing,
        keep_alive: !close && (!http10 || keep_alive_token) && status != 101,
        len,
        replica,
    }))
}

/// One short phrase for an I/O error: `connection refused`, `connection timed out`, ...
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::TimedOut => "connection timed out".into(),
        ErrorKind::ConnectionReset => "connection reset by peer".into(),
        ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

/// An in-memory peer for tests and the fuzz harness.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod scripted {
    use std::collections::VecDeque;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    /// A peer that accepts every write and answers with the given reads, one per
    /// `poll_read`, then end of stream: the read boundaries are exactly the test's.
    pub(crate) struct Scripted(pub(crate) VecDeque<Vec<u8>>);

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(front) = self.0.front_mut() {
                let n = front.len().min(buf.remaining());
                buf.put_slice(&front[..n]);
                front.drain(..n);
                if front.is_empty() {
                    self.0.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::scripted::Scripted;
    use super::*;

    /// How a generated response delimits its body.
    #[derive(Clone, Debug)]
    enum Body {
        Length(Vec<u8>),
        /// Chunks (empty ones left out: a zero-size chunk ends the body), with a trailer.
        Chunked(Vec<Vec<u8>>, bool),
        /// `Connection: close` and no length: the body runs to end of stream.
        Close(Vec<u8>),
        /// 204: no body.
        NoContent,
    }

    /// A valid response, its head length (interim 100 included) and its payload length.
    fn render(interim: bool, extra: &[(String, String)], body: &Body) -> (Vec<u8>, usize, usize) {
        let mut head = Vec::new();
        if interim {
            head.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let status = if matches!(body, Body::NoContent) {
            204
        } else {
            200
        };
        head.extend_from_slice(format!("HTTP/1.1 {status} X\r\n").as_bytes());
        for (k, v) in extra {
            head.extend_from_slice(format!("x-{k}: {v}\r\n").as_bytes());
        }
        let mut tail = Vec::new();
        let payload = match body {
            Body::Length(b) => {
                head.extend_from_slice(format!("content-length: {}\r\n", b.len()).as_bytes());
                tail.extend_from_slice(b);
                b.len()
            }
            Body::Chunked(chunks, trailer) => {
                head.extend_from_slice(b"transfer-encoding: chunked\r\n");
                for c in chunks.iter().filter(|c| !c.is_empty()) {
                    tail.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    tail.extend_from_slice(c);
                    tail.extend_from_slice(b"\r\n");
                }
                tail.extend_from_slice(b"0\r\n");
                if *trailer {
                    tail.extend_from_slice(b"x-checksum: 1\r\n");
                }
                tail.extend_from_slice(b"\r\n");
                chunks.iter().map(Vec::len).sum()
            }
            Body::Close(b) => {
                head.extend_from_slice(b"connection: close\r\n");
                tail.extend_from_slice(b);
                b.len()
            }
            Body::NoContent => 0,
        };
        head.extend_from_slice(b"\r\n");
        let head_len = head.len();
        head.extend_from_slice(&tail);
        (head, head_len, payload)
    }

    /// Status, bytes received, reusable, whether body data was seen.
    fn exchange(reads: Vec<Vec<u8>>) -> Result<(u16, u64, bool, bool), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        let template = Template::new(&Method::GET, "/x", &HeaderMap::new(), b"");
        let mut conn = Conn::new(Scripted(reads.into()));
        let r = rt
            .block_on(conn.exchange(
                &template,
                &[b'0'; TRACEPARENT_LEN],
                &[b'0'; REQUEST_ID_LEN],
                None,
            ))
            .map_err(|e| e.to_string())?;
        Ok((r.status, r.received, r.reusable, r.first_data.is_some()))
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn body() -> impl Strategy<Value = Body> {
        prop_oneof![
            bytes(300).prop_map(Body::Length),
            (proptest::collection::vec(bytes(40), 0..6), any::<bool>())
                .prop_map(|(c, t)| Body::Chunked(c, t)),
            bytes(300).prop_map(Body::Close),
            Just(Body::NoContent),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any split of a valid response into reads parses as the whole response in one
        /// read does, and counts the head plus the payload (not the chunk framing).
        #[test]
        fn any_split_of_a_valid_response_parses_the_same(
            interim in any::<bool>(),
            extra in proptest::collection::vec(("[a-z]{1,8}", "[ -~]{0,20}"), 0..4),
            body in body(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let extra: Vec<(String, String)> =
                extra.into_iter().map(|(k, v)| (k, v.trim().to_owned())).collect();
            let (wire, head_len, payload) = render(interim, &extra, &body);
            let whole = exchange(vec![wire.clone()]);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            at.extend([0, wire.len()]);
            at.sort_unstable();
            at.dedup();
            let reads: Vec<Vec<u8>> = at.windows(2).map(|w| wire[w[0]..w[1]].to_vec()).collect();
            let split = exchange(reads);
            prop_assert_eq!(&split, &whole);
            let (status, received, reusable, data) = whole.map_err(TestCaseError::fail)?;
            prop_assert_eq!(status, if matches!(body, Body::NoContent) { 204 } else { 200 });
            prop_assert_eq!(received, (head_len + payload) as u64);
            prop_assert_eq!(reusable, !matches!(body, Body::Close(_)));
            prop_assert_eq!(data, payload > 0);
        }
    }

    #[test]
    fn a_truncated_body_is_an_error_whatever_the_split() {
        let (wire, _, _) = render(false, &[], &Body::Length(vec![b'x'; 100]));
        let cut = wire.len() - 10;
        let one = exchange(vec![wire[..cut].to_vec()]);
        let two = exchange(vec![wire[..5].to_vec(), wire[5..cut].to_vec()]);
        assert_eq!(one, Err(CLOSED_EARLY.to_owned()));
        assert_eq!(two, one);
    }

    /// A peer that answers with `reads`, then fails every read with `read_error`; its
    /// writes fail with `write_error` when given.
    struct Failing {
        reads: std::collections::VecDeque<Vec<u8>>,
        read_error: std::io::ErrorKind,
        write_error: Option<std::io::ErrorKind>,
    }

    impl AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(match self.reads.pop_front() {
                Some(b) => {
                    buf.put_slice(&b);
                    Ok(())
                }
                None => Err(self.read_error.into()),
            })
        }
    }

    impl AsyncWrite for Failing {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            b: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(match self.write_error {
                Some(k) => Err(k.into()),
                None => Ok(b.len()),
            })
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// The error of one exchange with `peer`.
    fn failure<S: AsyncRead + AsyncWrite + Unpin>(peer: S) -> Error {
        let template = Template::new(&Method::GET, "/x", &HeaderMap::new(), b"");
        let mut conn = Conn::new(peer);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        match rt.block_on(conn.exchange(
            &template,
            &[b'0'; TRACEPARENT_LEN],
            &[b'0'; REQUEST_ID_LEN],
            None,
        )) {
            Ok(r) => panic!("expected a failure, got status {}", r.status),
            Err(e) => e,
        }
    }

    fn failing(reads: &[&[u8]], read_error: std::io::ErrorKind) -> Failing {
        Failing {
            reads: reads.iter().map(|r| r.to_vec()).collect(),
            read_error,
            write_error: None,
        }
    }

    #[test]
    fn each_failure_carries_its_cause_and_whether_it_may_be_retried() {
        use std::io::ErrorKind as K;
        let stale = |e: &Error| matches!(e, Error::Stale { .. });
        // Reset or closed before any byte: retryable on a kept-alive connection.
        let e = failure(failing(&[], K::ConnectionReset));
        assert!(stale(&e) && e.cause() == ErrorCause::Reset, "{e:?}");
        let e = failure(Scripted(Default::default()));
        assert!(stale(&e) && e.cause() == ErrorCause::Reset, "{e:?}");
        assert_eq!(e.to_string(), CLOSED_EARLY);
        let e = failure(Failing {
            write_error: Some(K::BrokenPipe),
            ..failing(&[], K::ConnectionReset)
        });
        assert!(stale(&e) && e.cause() == ErrorCause::Reset, "{e:?}");
        // After part of the answer: not retried.
        let e = failure(failing(&[b"HTTP/1.1 200 OK\r\n"], K::ConnectionReset));
        assert!(!stale(&e) && e.cause() == ErrorCause::Reset, "{e:?}");
        let e = failure(failing(&[b"HTTP/1.1 200 OK\r\n"], K::TimedOut));
        assert_eq!(e.cause(), ErrorCause::Timeout, "{e:?}");
        // Not valid HTTP/1.1.
        for bad in [
            &b"HTTP/1.1 2xx Nope\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX",
        ] {
            let e = failure(Scripted(vec![bad.to_vec()].into()));
            assert!(
                !stale(&e) && e.cause() == ErrorCause::Protocol,
                "{e:?} for {}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
