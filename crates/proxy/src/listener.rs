//! Listening sockets shared by the workers through `SO_REUSEPORT`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};

use socket2::{Domain, Protocol, Socket, Type};

/// `count` (at least one) non-blocking listening sockets on `0.0.0.0:port`, one per worker,
/// sharing the port through `SO_REUSEPORT` so the kernel spreads connections across them.
///
/// The port is first claimed with a socket *without* `SO_REUSEPORT`: that bind fails with
/// "address in use" when anything already listens there — another Sluice process included,
/// which `SO_REUSEPORT` alone would let in silently to take a share of the connections. Port
/// `0` resolves to one free port here.
pub(crate) fn bind_reuseport(port: u16, count: usize) -> std::io::Result<Vec<StdListener>> {
    let claim = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    claim.set_reuse_address(true)?;
    claim.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    let port = claim
        .local_addr()?
        .as_socket()
        .map_or(port, |addr| addr.port());
    drop(claim);
    (0..count.max(1))
        .map(|_| {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_tcp_nodelay(true)?;
            socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
            socket.listen(4096)?;
            socket.set_nonblocking(true)?;
            Ok(socket.into())
        })
        .collect()
}
