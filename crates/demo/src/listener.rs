//! Listening sockets: creation through socket2 (SO_REUSEADDR, optional SO_REUSEPORT), the `listening on` startup line.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::system::SystemError;

/// Backlog passed to `listen(2)`; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// Binds a non-blocking TCP listener on `addr`.
///
/// With `reuse_port` the socket gets SO_REUSEPORT so several listeners (one per worker thread) can share the port and
/// the kernel spreads the incoming connections between them.
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener, SystemError> {
    let listen_err = |source| SystemError::Listen { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(listen_err)?;
    socket.set_reuse_address(true).map_err(listen_err)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(listen_err)?;
    }
    socket.set_nonblocking(true).map_err(listen_err)?;
    socket.bind(&addr.into()).map_err(listen_err)?;
    socket.listen(BACKLOG).map_err(listen_err)?;
    Ok(socket.into())
}

/// Reads back the address a listener really got (the kernel picks the port when 0 was requested).
pub(crate) fn local_addr(
    listener: &TcpListener,
    requested: SocketAddr,
) -> Result<SocketAddr, SystemError> {
    listener
        .local_addr()
        .map_err(|source| SystemError::LocalAddr { requested, source })
}

/// The startup line printed on stdout once the socket accepts connections; tests and scripts parse it.
pub(crate) fn announcement(addr: SocketAddr) -> String {
    format!("listening on {addr}")
}

/// Prints [`announcement`] on stdout and flushes it, so a parent reading a pipe sees it at once.
pub(crate) fn announce(addr: SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop the server: the line is informational.
    let _ = writeln!(out, "{}", announcement(addr));
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gets_a_real_port() {
        let requested: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener = bind(requested, false).unwrap();
        let got = local_addr(&listener, requested).unwrap();
        assert_eq!(got.ip(), requested.ip());
        assert_ne!(got.port(), 0);
        assert_eq!(
            announcement(got),
            format!("listening on 127.0.0.1:{}", got.port())
        );
    }

    #[test]
    fn reuse_port_lets_two_listeners_share_a_port() {
        let first = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind(addr, true).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
    }

    #[test]
    fn without_reuse_port_a_taken_port_is_an_error() {
        let first = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr, false).unwrap_err();
        assert!(
            matches!(err, SystemError::Listen { addr: a, .. } if a == addr),
            "{err}"
        );
    }
}
