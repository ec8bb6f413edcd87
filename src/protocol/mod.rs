//! Wire protocol v1: frames as values and the codec between frames and bytes. Pure: no I/O.
//! `protocol.md` at the top of the repository is the normative specification.

pub mod buffer;
pub mod codec;
pub mod frame;
pub mod glob;
pub mod peer_auth;

pub use buffer::FrameBuffer;
pub use codec::*;
pub use frame::*;
pub use glob::{GlobError, NamespaceGlob};
pub use peer_auth::{ChannelBinding, PeerNonce, PeerRole, PeerTranscript};
