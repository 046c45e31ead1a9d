//! `oplog serve`: the node, its control socket and its metrics.

use std::net::SocketAddr;
use std::path::Path;

use iroh::{Endpoint, RelayMode};

use crate::cli::ServeArgs;
use crate::error::CliError;

/// Binds an iroh endpoint on `bind` with the node's secret key, no relay and no address
/// lookup: peers dial it by id plus socket address.
pub async fn bind_endpoint(
    secret: [u8; 32],
    bind: SocketAddr,
    alpns: Vec<Vec<u8>>,
) -> Result<Endpoint, CliError> {
    let builder = Endpoint::empty_builder(RelayMode::Disabled)
        .clear_ip_transports()
        .alpns(alpns)
        .secret_key(iroh::SecretKey::from_bytes(&secret))
        .bind_addr(bind)
        .map_err(|e| CliError::Node(format!("cannot bind on {bind}: {e}")))?;
    builder.bind().await.map_err(|e| {
        CliError::Node(format!(
            "cannot bind the endpoint on {bind}: {e}; pick a free port or another address with --bind"
        ))
    })
}

/// Runs the node until Ctrl-C or SIGTERM.
pub async fn serve(_data_dir: &Path, _args: ServeArgs) -> Result<(), CliError> {
    Err(CliError::Node("not yet".into()))
}
