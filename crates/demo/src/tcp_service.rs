//! The redis-like TCP backend for TCP-mode proxy tests: a line protocol that also accepts RESP arrays.
//!
//! Commands (case-insensitive), inline (`PING\r\n`) or as RESP arrays (`*1\r\n$4\r\nPING\r\n`):
//! - `PING` -> `+PONG`; `PING msg` -> `+msg`;
//! - `ECHO x` -> `+x` (inline: everything after the first space; RESP: the arguments joined by spaces);
//! - `QUIT` -> `+OK`, then the connection is closed;
//! - `ECHO` without argument -> `-ERR wrong number of arguments for 'echo' command`;
//! - anything else -> `-ERR unknown command`.
//!
//! Replies are simple strings, so CR and LF inside an argument are replaced by spaces. Blank lines are ignored.
//! Lines longer than [`MAX_LINE`] and malformed RESP framing get a `-ERR Protocol error` and the connection is closed.

use std::io;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::shutdown::ShutdownSignal;

/// Longest accepted line or RESP bulk string, in bytes (terminator excluded).
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// Most elements accepted in one RESP array.
const MAX_ARGS: usize = 64;

/// One parsed request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Command {
    /// The command name, upper-cased.
    name: String,
    /// The argument text, if any (see the module doc for how it is formed).
    arg: Option<String>,
}

/// What a connection does after a reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep reading commands.
    Continue,
    /// Close the connection after writing the reply.
    Close,
}

/// Result of reading one request from the stream.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// A command to execute.
    Command(Command),
    /// A blank line: nothing to answer.
    Blank,
    /// The peer closed the stream.
    Eof,
    /// Broken framing: answer with this message and close.
    ProtocolError(&'static str),
}

/// Accepts connections until `shutdown` fires; each connection also stops at the shutdown.
pub(crate) async fn serve(listener: TcpListener, shutdown: ShutdownSignal) {
    let mut accept_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            () = accept_shutdown.requested() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let mut conn_shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        debug!(%peer, "connection opened");
                        let (read, mut write) = stream.into_split();
                        let mut reader = BufReader::new(read);
                        tokio::select! {
                            () = conn_shutdown.requested() => {}
                            result = converse(&mut reader, &mut write) => {
                                if let Err(error) = result {
                                    debug!(%peer, %error, "connection ended with an error");
                                }
                            }
                        }
                        debug!(%peer, "connection closed");
                    });
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
    info!("shutting down");
}

/// Runs the request/reply loop on one connection until EOF, `QUIT` or a protocol error.
pub(crate) async fn converse<R, W>(reader: &mut R, writer: &mut W) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut line = Vec::with_capacity(128);
    loop {
        let (reply, next) = match read_frame(reader, &mut line).await? {
            Frame::Eof => return Ok(()),
            Frame::Blank => continue,
            Frame::ProtocolError(message) => {
                (format!("-ERR Protocol error: {message}\r\n"), Next::Close)
            }
            Frame::Command(command) => execute(&command),
        };
        writer.write_all(reply.as_bytes()).await?;
        writer.flush().await?;
        if next == Next::Close {
            writer.shutdown().await?;
            return Ok(());
        }
    }
}

/// Computes the reply to one command.
pub(crate) fn execute(command: &Command) -> (String, Next) {
    match (command.name.as_str(), command.arg.as_deref()) {
        ("PING", None) => ("+PONG\r\n".to_owned(), Next::Continue),
        ("PING", Some(msg)) | ("ECHO", Some(msg)) => {
            (format!("+{}\r\n", simple_string(msg)), Next::Continue)
        }
        ("ECHO", None) => (
            "-ERR wrong number of arguments for 'echo' command\r\n".to_owned(),
            Next::Continue,
        ),
        ("QUIT", _) => ("+OK\r\n".to_owned(), Next::Close),
        _ => ("-ERR unknown command\r\n".to_owned(), Next::Continue),
    }
}

/// Makes text safe for a RESP simple string (no CR/LF).
fn simple_string(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Outcome of reading one line.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line is in the buffer, terminator removed.
    Read,
    /// The peer closed the stream before sending anything.
    Eof,
    /// The line exceeds [`MAX_LINE`].
    TooLong,
}

/// Reads one line into `buf` without its terminator.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let limit = (MAX_LINE + 2) as u64;
    let read = (&mut *reader).take(limit).read_until(b'\n', buf).await?;
    if read == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() as u64 >= limit {
        return Ok(Line::TooLong);
    }
    // A final line without a terminator (peer half-closed) is accepted as a line.
    Ok(Line::Read)
}

/// Reads the next request: an inline command line or a RESP array.
async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> io::Result<Frame> {
    match read_line(reader, line).await? {
        Line::Eof => return Ok(Frame::Eof),
        Line::TooLong => return Ok(Frame::ProtocolError("line too long")),
        Line::Read => {}
    }
    if line.first() != Some(&b'*') {
        return Ok(parse_inline(line));
    }
    let Some(count) = parse_length(&line[1..]) else {
        return Ok(Frame::ProtocolError("invalid multibulk length"));
    };
    if count == 0 || count > MAX_ARGS {
        return Ok(Frame::ProtocolError("invalid multibulk length"));
    }
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        match read_line(reader, line).await? {
            Line::Eof => return Ok(Frame::Eof),
            Line::TooLong => return Ok(Frame::ProtocolError("line too long")),
            Line::Read => {}
        }
        let len = match line.split_first() {
            Some((b'$', digits)) => parse_length(digits),
            _ => None,
        };
        let Some(len) = len.filter(|len| *len <= MAX_LINE) else {
            return Ok(Frame::ProtocolError("invalid bulk length"));
        };
        let mut data = vec![0u8; len + 2];
        match reader.read_exact(&mut data).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(Frame::Eof),
            Err(error) => return Err(error),
        }
        if !data.ends_with(b"\r\n") {
            return Ok(Frame::ProtocolError("bulk string not terminated by CRLF"));
        }
        data.truncate(len);
        args.push(String::from_utf8_lossy(&data).into_owned());
    }
    let mut args = args.into_iter();
    let name = args.next().unwrap_or_default().to_ascii_uppercase();
    let rest: Vec<String> = args.collect();
    let arg = (!rest.is_empty()).then(|| rest.join(" "));
    Ok(Frame::Command(Command { name, arg }))
}

/// Parses a decimal RESP length.
fn parse_length(digits: &[u8]) -> Option<usize> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parses an inline command: the first word is the name, the rest of the line (trimmed) the argument.
fn parse_inline(line: &[u8]) -> Frame {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Frame::Blank;
    }
    let (name, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    Frame::Command(Command {
        name: name.to_ascii_uppercase(),
        arg: (!rest.is_empty()).then(|| rest.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::shutdown::ShutdownTrigger;

    /// Feeds `input` to a conversation and returns everything it wrote.
    async fn talk(input: &[u8]) -> String {
        let mut reader = BufReader::new(input);
        let mut out = Vec::new();
        converse(&mut reader, &mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn inline_commands() {
        assert_eq!(talk(b"PING\r\n").await, "+PONG\r\n");
        assert_eq!(talk(b"ping\n").await, "+PONG\r\n");
        assert_eq!(talk(b"PING hi\r\n").await, "+hi\r\n");
        assert_eq!(talk(b"ECHO hello world\r\n").await, "+hello world\r\n");
        assert_eq!(
            talk(b"echo\r\n").await,
            "-ERR wrong number of arguments for 'echo' command\r\n"
        );
        assert_eq!(talk(b"GET key\r\n").await, "-ERR unknown command\r\n");
        assert_eq!(
            talk(b"\r\n\r\nPING\r\n").await,
            "+PONG\r\n",
            "blank lines are ignored"
        );
        assert_eq!(talk(b"PING").await, "+PONG\r\n", "unterminated final line");
    }

    #[tokio::test]
    async fn resp_arrays() {
        assert_eq!(talk(b"*1\r\n$4\r\nPING\r\n").await, "+PONG\r\n");
        assert_eq!(
            talk(b"*2\r\n$4\r\necho\r\n$5\r\na\r\nb!\r\n").await,
            "+a  b!\r\n"
        );
        assert_eq!(
            talk(b"*1\r\n$3\r\nGET\r\n").await,
            "-ERR unknown command\r\n"
        );
        assert_eq!(
            talk(b"*x\r\n").await,
            "-ERR Protocol error: invalid multibulk length\r\n"
        );
        assert_eq!(
            talk(b"*1\r\n$999999999\r\n").await,
            "-ERR Protocol error: invalid bulk length\r\n"
        );
        assert_eq!(
            talk(b"*1\r\n$4\r\nPINGxx").await,
            "-ERR Protocol error: bulk string not terminated by CRLF\r\n"
        );
        assert_eq!(
            talk(b"*2\r\n$4\r\nPING\r\n").await,
            "",
            "EOF inside an array answers nothing"
        );
    }

    #[tokio::test]
    async fn quit_closes_and_ignores_the_rest() {
        assert_eq!(talk(b"PING\r\nQUIT\r\nPING\r\n").await, "+PONG\r\n+OK\r\n");
    }

    #[tokio::test]
    async fn overlong_line_is_a_protocol_error() {
        let mut input = vec![b'A'; MAX_LINE + 10];
        input.extend_from_slice(b"\r\nPING\r\n");
        assert_eq!(talk(&input).await, "-ERR Protocol error: line too long\r\n");
        let mut exact = b"ECHO ".to_vec();
        exact.resize(MAX_LINE, b'x');
        exact.extend_from_slice(b"\r\n");
        assert!(
            talk(&exact).await.starts_with("+xxx"),
            "a line of exactly MAX_LINE bytes is accepted"
        );
    }

    #[tokio::test]
    async fn over_tcp_with_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, signal) = ShutdownTrigger::new();
        let server = tokio::spawn(serve(listener, signal));

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"PING\r\n*1\r\n$4\r\nPING\r\nECHO abc\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64];
        let mut got = Vec::new();
        while got.len() < "+PONG\r\n+PONG\r\n+abc\r\n".len() {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"+PONG\r\n+PONG\r\n+abc\r\n");

        // An idle connection is closed by the shutdown and the accept loop ends.
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "connection should be closed after shutdown");
    }
}
