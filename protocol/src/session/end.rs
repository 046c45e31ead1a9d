//! How a session ends: the code in its END frame (spec 9.6).

/// The code an END frame carries: why the session ended. `Done` is the only success.
///
/// A receiver maps codes it does not know to [`EndCode::Other`] and treats them as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndCode {
    /// `00`: the session completed; both sides hold what the other had at its start.
    Done,
    /// `01`: a frame was malformed, or not allowed where it came (a broken or hostile peer).
    Protocol,
    /// `02`: a frame was longer than the receiver accepts.
    FrameTooLarge,
    /// `03`: a budget of the session ran out: messages (rounds), parts, session memory,
    /// entries in one turn, ancestry requests or bytes.
    Limit,
    /// `04`: an entry failed decoding or verification (hash, signature, structure).
    InvalidEntry,
    /// `05`: the peer is not allowed to sync with this node.
    Refused,
    /// `06`: the peer was silent for too long, or the session ran past its time budget.
    Timeout,
    /// `07`: a session between the same two nodes is already running; try again later.
    Busy,
    /// `08`: the sender failed locally (its store failed); not the receiver's fault.
    Internal,
    /// `09`: the sender is shutting down.
    Shutdown,
    /// `0A`: the connection ended before an END frame (never sent; reported locally).
    ConnectionLost,
    /// A code this implementation does not know.
    Other(u8),
}

impl EndCode {
    /// The code's byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            EndCode::Done => 0,
            EndCode::Protocol => 1,
            EndCode::FrameTooLarge => 2,
            EndCode::Limit => 3,
            EndCode::InvalidEntry => 4,
            EndCode::Refused => 5,
            EndCode::Timeout => 6,
            EndCode::Busy => 7,
            EndCode::Internal => 8,
            EndCode::Shutdown => 9,
            EndCode::ConnectionLost => 10,
            EndCode::Other(b) => b,
        }
    }

    /// The code for a byte read from the wire.
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => EndCode::Done,
            1 => EndCode::Protocol,
            2 => EndCode::FrameTooLarge,
            3 => EndCode::Limit,
            4 => EndCode::InvalidEntry,
            5 => EndCode::Refused,
            6 => EndCode::Timeout,
            7 => EndCode::Busy,
            8 => EndCode::Internal,
            9 => EndCode::Shutdown,
            10 => EndCode::ConnectionLost,
            other => EndCode::Other(other),
        }
    }

    /// Whether the session succeeded.
    pub fn is_done(self) -> bool {
        self == EndCode::Done
    }
}

impl std::fmt::Display for EndCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            EndCode::Done => "done",
            EndCode::Protocol => "protocol error",
            EndCode::FrameTooLarge => "frame too large",
            EndCode::Limit => "session budget exceeded",
            EndCode::InvalidEntry => "invalid entry",
            EndCode::Refused => "refused",
            EndCode::Timeout => "timed out",
            EndCode::Busy => "busy",
            EndCode::Internal => "internal failure",
            EndCode::Shutdown => "shutting down",
            EndCode::ConnectionLost => "connection lost",
            EndCode::Other(b) => return write!(f, "unknown end code {b}"),
        };
        write!(f, "{name} ({:02})", self.to_u8())
    }
}
