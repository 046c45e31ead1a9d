//! Endpoints that never touch the network beyond loopback: for tests, demos and benchmarks.

use std::net::SocketAddr;

use iroh::endpoint::{BindError, InvalidSocketAddr};
use iroh::{Endpoint, EndpointAddr, RelayMode, SecretKey};

/// Why an offline endpoint could not be bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineBindError {
    /// iroh could not bind the UDP socket on 127.0.0.1 (no loopback interface, or the
    /// sandbox forbids sockets).
    #[error("cannot bind an iroh endpoint on 127.0.0.1: {0}; check that the loopback interface is up and sockets are allowed")]
    Bind(#[from] BindError),
    /// iroh refused the loopback socket address.
    #[error("iroh refused 127.0.0.1:0 as a bind address: {0}")]
    Address(#[from] InvalidSocketAddr),
    /// The endpoint bound but reports no socket address to dial it by.
    #[error("the endpoint bound but has no socket address; this is an iroh bug, report it")]
    NoSocket,
}

/// Binds an iroh endpoint on `127.0.0.1` (an OS-chosen port) with no relay and no address
/// lookup: nothing leaves the machine. `secret_key` chooses the node's identity (a random one
/// when `None`). `alpns` are the protocols it accepts (a `Router` sets them too).
///
/// Peers dial it by id plus socket address: [`loopback_addr`].
pub async fn bind_loopback(
    secret_key: Option<SecretKey>,
    alpns: Vec<Vec<u8>>,
) -> Result<Endpoint, OfflineBindError> {
    let mut builder = Endpoint::empty_builder(RelayMode::Disabled)
        .clear_ip_transports()
        .alpns(alpns);
    builder = builder.bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    if let Some(key) = secret_key {
        builder = builder.secret_key(key);
    }
    Ok(builder.bind().await?)
}

/// The address to dial `endpoint` by on this machine: its id plus its first bound socket.
pub fn loopback_addr(endpoint: &Endpoint) -> Result<EndpointAddr, OfflineBindError> {
    let socket = endpoint
        .bound_sockets()
        .into_iter()
        .next()
        .ok_or(OfflineBindError::NoSocket)?;
    Ok(EndpointAddr::new(endpoint.id()).with_ip_addr(socket))
}
