//! The Reader and Writer every frame's fields go through: big-endian fields, each read
//! checked against the bytes left in the frame and against the limits.

use super::*;

/// Appends big-endian fields to a frame being encoded.
pub(super) struct Writer<'a> {
    pub(super) out: &'a mut Vec<u8>,
    /// The first length-prefixed field too long for its `u16` length: the frame cannot be
    /// encoded (`try_write_frame` drops it).
    pub(super) overlong: Option<FieldTooLong>,
}

impl Writer<'_> {
    pub(super) fn put_u8(&mut self, value: u8) {
        self.out.push(value);
    }

    /// Fixed-size bytes without a length (a nonce, a proof).
    pub(super) fn put_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub(super) fn put_u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    /// Writes a `u16` element count for `length` elements and returns how many to write:
    /// `length`, or 65535 if it is longer (callers bound their lists far below that, so
    /// this is only what keeps encoding total).
    pub(super) fn put_count16(&mut self, length: usize) -> usize {
        let count = u16::try_from(length).unwrap_or(u16::MAX);
        self.put_u16(count);
        usize::from(count)
    }

    pub(super) fn put_u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    pub(super) fn put_u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    // The wire type `bool` of protocol.md section 2. Subscribe's `tail` became a flags byte,
    // so no frame uses it today; kept for the frames that will.
    #[allow(dead_code)]
    pub(super) fn put_bool(&mut self, value: bool) {
        self.put_u8(u8::from(value));
    }

    /// An id is 10 bytes: the u64 counter, then the u16 actor.
    pub(super) fn put_id(&mut self, id: EventId) {
        self.put_u64(id.counter);
        self.put_u16(id.actor.0);
    }

    /// An absent id is written as the id with counter 0 and actor 0.
    pub(super) fn put_optional_id(&mut self, id: Option<EventId>) {
        self.put_id(id.unwrap_or(EventId::NONE));
    }

    /// A `u16` length, then the bytes. A field over 65535 bytes is not written: it is noted
    /// in `overlong`, which makes the whole frame fail to encode.
    pub(super) fn put_bytes16(&mut self, bytes: &[u8], what: &'static str) {
        let Ok(length) = u16::try_from(bytes.len()) else {
            self.overlong.get_or_insert(FieldTooLong {
                what,
                size: bytes.len(),
            });
            return;
        };
        self.put_u16(length);
        self.out.extend_from_slice(bytes);
    }

    /// Free text: truncated to 65535 bytes at a character boundary.
    pub(super) fn put_text16(&mut self, text: &str) {
        let mut end = text.len().min(usize::from(u16::MAX));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.put_bytes16(&text.as_bytes()[..end], "text");
    }

    pub(super) fn put_namespace(&mut self, namespace: &str) {
        self.put_bytes16(namespace.as_bytes(), "namespace");
    }

    pub(super) fn put_data(&mut self, data: &[u8]) {
        let length = u32::try_from(data.len()).expect("event data over 4 GiB");
        self.put_u32(length);
        self.out.extend_from_slice(data);
    }
}

/// Reads big-endian fields from the body of one frame, checking each against the bytes left.
pub(super) struct Reader<'a> {
    pub(super) body: &'a [u8],
    pub(super) position: usize,
    pub(super) kind: u8,
    pub(super) limits: &'a WireLimits,
}

// The getters are small and called per field of every frame (several per produced event):
// `#[inline]` lets the produce decoder inline them across codegen units; the errors are cold.
impl<'a> Reader<'a> {
    #[cold]
    pub(super) fn error(&self, message: String) -> DecodeError {
        DecodeError::malformed(format!(
            "{} frame (kind {:#04x}): {message}",
            kind_name(self.kind),
            self.kind
        ))
    }

    #[inline]
    pub(super) fn take(&mut self, size: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let left = self.body.len() - self.position;
        if size > left {
            return Err(self.short(size, left, what));
        }
        let bytes = &self.body[self.position..self.position + size];
        self.position += size;
        Ok(bytes)
    }

    #[cold]
    #[inline(never)]
    fn short(&self, size: usize, left: usize, what: &str) -> DecodeError {
        self.error(format!(
            "{what} needs {size} bytes but only {left} are left in the frame"
        ))
    }

    #[inline]
    pub(super) fn take_array<const N: usize>(
        &mut self,
        what: &str,
    ) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    #[inline]
    pub(super) fn get_u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take_array::<1>(what)?[0])
    }

    #[inline]
    pub(super) fn get_u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take_array(what)?))
    }

    #[inline]
    pub(super) fn get_u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take_array(what)?))
    }

    #[inline]
    pub(super) fn get_u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take_array(what)?))
    }

    /// A u32 field the protocol says is at least 1.
    pub(super) fn get_u32_positive(&mut self, what: &str) -> Result<u32, DecodeError> {
        match self.get_u32(what)? {
            0 => Err(self.error(format!("{what} is 0; it must be at least 1"))),
            value => Ok(value),
        }
    }

    /// A u64 field the protocol says is at least 1.
    pub(super) fn get_u64_positive(&mut self, what: &str) -> Result<u64, DecodeError> {
        match self.get_u64(what)? {
            0 => Err(self.error(format!("{what} is 0; it must be at least 1"))),
            value => Ok(value),
        }
    }

    // See `put_bool`.
    #[allow(dead_code)]
    pub(super) fn get_bool(&mut self, what: &str) -> Result<bool, DecodeError> {
        match self.get_u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(format!("{what} is {other}; a boolean must be 0 or 1"))),
        }
    }

    /// Any id, including counter 0 with any actor: callers check the canonical form.
    #[inline]
    pub(super) fn get_id(&mut self, what: &str) -> Result<EventId, DecodeError> {
        let counter = self.get_u64(what)?;
        let actor = self.get_u16(what)?;
        Ok(EventId::new(counter, actor))
    }

    /// An id where counter 0 means "none" (a start id, a cursor floor): "none" has one
    /// encoding, all zeros, so counter 0 with a non-zero actor is refused.
    pub(super) fn get_id_or_none(&mut self, what: &str) -> Result<EventId, DecodeError> {
        Ok(self.get_optional_id(what)?.unwrap_or(EventId::NONE))
    }

    /// The id of an existing event: counter 0 is refused.
    pub(super) fn get_event_id(&mut self, what: &str) -> Result<EventId, DecodeError> {
        let id = self.get_id(what)?;
        if id.is_none() {
            return Err(self.error(format!("{what} has counter 0, which is not an event id")));
        }
        Ok(id)
    }

    /// Counter 0 means absent; its actor must then be 0 too, so each value has one encoding.
    #[inline]
    pub(super) fn get_optional_id(&mut self, what: &str) -> Result<Option<EventId>, DecodeError> {
        let id = self.get_id(what)?;
        match (id.counter, id.actor.0) {
            (0, 0) => Ok(None),
            (0, actor) => Err(self.error(format!(
                "{what} has counter 0 (absent) but actor {actor}; an absent id is all zeros"
            ))),
            _ => Ok(Some(id)),
        }
    }

    pub(super) fn get_bytes16(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let length = self.get_u16(what)?;
        self.take(usize::from(length), what)
    }

    pub(super) fn get_str16(&mut self, what: &str) -> Result<String, DecodeError> {
        let bytes = self.get_bytes16(what)?;
        self.utf8(bytes, what)
    }

    pub(super) fn utf8(&self, bytes: &[u8], what: &str) -> Result<String, DecodeError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(error) => Err(self.error(format!("{what} is not valid UTF-8: {error}"))),
        }
    }

    pub(super) fn get_namespace(&mut self) -> Result<String, DecodeError> {
        self.get_namespace_str().map(str::to_string)
    }

    /// The namespace as a view of the frame's bytes (no copy).
    #[inline]
    pub(super) fn get_namespace_str(&mut self) -> Result<&'a str, DecodeError> {
        let length = self.get_u16("namespace")?;
        if u32::from(length) > self.limits.namespace_length_max {
            return Err(self.error(format!(
                "namespace of {length} bytes is over the limit of {} bytes",
                self.limits.namespace_length_max
            )));
        }
        let bytes = self.take(usize::from(length), "namespace")?;
        // A namespace is usually ASCII, checked a word at a time; the UTF-8 check of the
        // standard library takes several times as long on names this short (one per produced
        // event: BENCHMARKS.md, issue 13 session 11).
        if bytes.is_ascii() {
            // SAFETY: every byte is below 0x80, so the bytes are valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes)
            .map_err(|error| self.error(format!("namespace is not valid UTF-8: {error}")))
    }

    #[inline]
    pub(super) fn get_data(&mut self) -> Result<&'a [u8], DecodeError> {
        let length = self.get_u32("data")?;
        if length > self.limits.event_data_size_max {
            return Err(self.error(format!(
                "event data of {length} bytes is over the limit of {} bytes",
                self.limits.event_data_size_max
            )));
        }
        // A u32 always fits in a usize on the 32- and 64-bit targets flo supports.
        self.take(length as usize, "data")
    }

    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        let left = self.body.len() - self.position;
        if left > 0 {
            return Err(self.error(format!("{left} bytes left over after the last field")));
        }
        Ok(())
    }
}
