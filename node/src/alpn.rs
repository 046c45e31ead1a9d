//! The ALPNs a node registers the protocol under.

/// The ALPN of oplog-sync, version 1, for a node that keeps no clusters apart.
pub const ALPN: &[u8] = b"oplog-sync/1";

/// The cluster-private ALPN for the cluster whose shared secret is `secret`:
/// `oplog-sync/1/` followed by the first 16 hex characters (64 bits) of BLAKE3(`secret`).
///
/// This is Shoal's scheme for its own cluster ALPN (`shoal/0/<16 hex of blake3(secret)>`):
/// nodes of different clusters, even on one network, never complete a handshake, because a
/// QUIC connection needs both sides to share an ALPN. The tag keeps clusters apart; it is no
/// access control (the allowed peer set of [`OplogSync`](crate::OplogSync) is). Register it
/// with [`OplogSync::with_alpn`](crate::OplogSync::with_alpn) and on the `Router`.
///
/// ```
/// let alpn = oplog_node::cluster_alpn(b"my cluster secret");
/// assert!(alpn.starts_with(b"oplog-sync/1/"));
/// assert_eq!(alpn.len(), "oplog-sync/1/".len() + 16);
/// ```
pub fn cluster_alpn(secret: &[u8]) -> Vec<u8> {
    let tag = blake3::hash(secret).to_hex();
    let mut alpn = Vec::with_capacity(ALPN.len() + 1 + 16);
    alpn.extend_from_slice(ALPN);
    alpn.push(b'/');
    alpn.extend_from_slice(&tag.as_bytes()[..16]);
    alpn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_alpn_is_the_prefix_and_16_hex_of_blake3() {
        let alpn = cluster_alpn(b"secret");
        let hex = blake3::hash(b"secret").to_hex();
        let expected = format!("oplog-sync/1/{}", &hex.as_str()[..16]);
        assert_eq!(alpn, expected.as_bytes());
        assert_ne!(cluster_alpn(b"secret"), cluster_alpn(b"secreT"));
    }
}
