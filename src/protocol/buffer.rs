//! Received bytes waiting to be decoded into frames, for the client side of a connection (the
//! client library). Pure: the caller does the reading, through a
//! closure, so this file never touches a socket.

use crate::config::WireLimits;

use super::{decode, Decode, DecodeError};

/// Bytes received and not yet decoded. Decoded frames are consumed from the front; the front
/// is compacted away just before the next read.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    bytes: Vec<u8>,
    /// Where the undecoded bytes start.
    start: usize,
}

impl FrameBuffer {
    pub fn with_capacity(capacity: usize) -> FrameBuffer {
        FrameBuffer {
            bytes: Vec::with_capacity(capacity),
            start: 0,
        }
    }

    /// The next whole frame, if one is buffered. On an error the buffer is left as it was;
    /// the caller decides whether the connection can go on (normally it cannot).
    pub fn decode<F: Decode>(&mut self, limits: &WireLimits) -> Result<Option<F>, DecodeError> {
        match decode(&self.bytes[self.start..], limits)? {
            Some((frame, used)) => {
                self.start += used;
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// True when undecoded bytes are buffered (perhaps only part of a frame).
    pub fn has_bytes(&self) -> bool {
        self.start < self.bytes.len()
    }

    /// Forgets every buffered byte.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
    }

    /// Offers `read` room for up to `chunk` more bytes and keeps the count it reports; on an
    /// error nothing is added. `read` is called once (a retry on `Interrupted` is its own
    /// business).
    pub fn fill_with<E>(
        &mut self,
        chunk: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        let filled = self.bytes.len();
        self.bytes.resize(filled + chunk, 0);
        let result = read(&mut self.bytes[filled..]);
        let count = match &result {
            Ok(count) => (*count).min(chunk),
            Err(_) => 0,
        };
        self.bytes.truncate(filled + count);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;
    use crate::protocol::ServerFrame;

    #[test]
    fn frames_split_across_fills_decode_once_whole() {
        let mut wire = Vec::new();
        encode(&ServerFrame::Pong { token: 7 }, &mut wire);
        encode(&ServerFrame::Pong { token: 8 }, &mut wire);
        let mut buffer = FrameBuffer::default();
        let limits = WireLimits::default();
        let mut decoded = Vec::new();
        for byte in &wire {
            let read = buffer.fill_with(4, |room: &mut [u8]| {
                room[0] = *byte;
                Ok::<_, ()>(1)
            });
            assert_eq!(read, Ok(1));
            while let Some(frame) = buffer.decode::<ServerFrame>(&limits).expect("valid frames") {
                decoded.push(frame);
            }
        }
        assert_eq!(
            decoded,
            vec![
                ServerFrame::Pong { token: 7 },
                ServerFrame::Pong { token: 8 }
            ]
        );
        assert!(!buffer.has_bytes());
    }

    #[test]
    fn a_failed_read_adds_nothing() {
        let mut buffer = FrameBuffer::default();
        let result = buffer.fill_with(16, |room: &mut [u8]| {
            room.fill(0xff);
            Err::<usize, _>("boom")
        });
        assert_eq!(result, Err("boom"));
        assert!(!buffer.has_bytes());
        assert_eq!(
            buffer
                .decode::<ServerFrame>(&WireLimits::default())
                .map_err(|_| ()),
            Ok(None)
        );
    }
}
