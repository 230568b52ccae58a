//! A tiny async HTTP/1.1 client for load and fault tests: one keep-alive
//! connection, requests written as given, responses read by
//! `Content-Length` or chunked framing. Hundreds of these fit in one test
//! process where a full client per connection would not.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Reply;

/// One client connection.
pub struct Conn {
    stream: BufReader<TcpStream>,
    /// The server said `Connection: close`: the next request needs a new
    /// connection.
    pub closing: bool,
}

/// The largest response head or chunk-size line this client accepts.
const MAX_LINE: usize = 64 * 1024;

impl Conn {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(stream),
            closing: false,
        })
    }

    /// The socket, e.g. to close it abruptly.
    pub fn socket(&self) -> &TcpStream {
        self.stream.get_ref()
    }

    /// Writes `request` (a whole request: head, blank line, body).
    pub async fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.get_mut().write_all(request).await
    }

    /// Sends `request` and reads its response; `head_only` for HEAD
    /// requests, whose responses have no body whatever their headers say.
    pub async fn exchange(&mut self, request: &[u8], head_only: bool) -> io::Result<Reply> {
        self.send(request).await?;
        self.read_reply(head_only).await
    }

    /// Reads the status line and headers of the next response.
    pub async fn read_head(&mut self) -> io::Result<Reply> {
        let mut status = None;
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if status.is_some() {
                    break;
                }
                return Err(bad("a blank line before the status line"));
            }
            if status.is_none() {
                let code = line
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse::<u16>().ok())
                    .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
                status = Some(code);
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            } else {
                return Err(bad(&format!("bad header line {line:?}")));
            }
        }
        let reply = Reply {
            status: status.unwrap_or_default(),
            headers,
            body: Vec::new(),
        };
        if reply
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.closing = true;
        }
        Ok(reply)
    }

    /// Reads one whole response.
    pub async fn read_reply(&mut self, head_only: bool) -> io::Result<Reply> {
        let mut reply = self.read_head().await?;
        if head_only || reply.status == 204 || reply.status == 304 || reply.status < 200 {
            return Ok(reply);
        }
        let chunked = reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            reply.body = self.chunked_body().await?;
        } else if let Some(len) = reply.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| bad(&format!("bad Content-Length {len:?}")))?;
            let mut body = vec![0u8; len];
            self.stream.read_exact(&mut body).await?;
            reply.body = body;
        } else {
            self.closing = true;
            self.stream.read_to_end(&mut reply.body).await?;
        }
        Ok(reply)
    }

    async fn chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| bad(&format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.stream.read_exact(&mut body[start..]).await?;
            if !self.line().await?.is_empty() {
                return Err(bad("a chunk longer than its size"));
            }
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    async fn line(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        let n = (&mut self.stream)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        if !buf.ends_with(b"\n") {
            return Err(bad("a line without its end"));
        }
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
        String::from_utf8(buf).map_err(|_| bad("a line that is not UTF-8"))
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
