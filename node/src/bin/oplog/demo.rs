//! `oplog demo`.

use crate::error::CliError;

/// Runs the demo.
pub async fn run() -> Result<(), CliError> {
    Err(CliError::Node("not yet".into()))
}
