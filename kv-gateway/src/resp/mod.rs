//! The Redis serialization protocol: decoding requests, encoding replies.

pub mod decode;
pub mod reply;

pub use decode::{DecodeLimits, Decoder, Frame};
pub use reply::{Protocol, Reply};
