//! The typed layer: a codec turns values into event data and back, so producers and
//! consumers work with their own types instead of bytes.

use std::fmt;
use std::marker::PhantomData;

use crate::event::{Event, EventId};
use crate::protocol::{Ack, NewEvent};

use super::{Client, ClientError, Subscription};

/// Why event data could not be decoded into a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// Serializes values of `T` into event data and back.
pub trait EventCodec<T> {
    /// The event data for `value`.
    fn encode(&self, value: &T) -> Vec<u8>;
    /// The value in an event's data, or why it is not one.
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// The data as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl EventCodec<Vec<u8>> for RawCodec {
    fn encode(&self, value: &Vec<u8>) -> Vec<u8> {
        value.clone()
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
}

/// UTF-8 text; data that is not valid UTF-8 is a decode error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Codec;

impl EventCodec<String> for Utf8Codec {
    fn encode(&self, value: &String) -> Vec<u8> {
        value.as_bytes().to_vec()
    }

    fn decode(&self, bytes: &[u8]) -> Result<String, CodecError> {
        String::from_utf8(bytes.to_vec()).map_err(|error| CodecError(error.to_string()))
    }
}

/// JSON through serde (cargo feature `json`).
#[cfg(feature = "json")]
pub struct JsonCodec<T>(PhantomData<fn() -> T>);

#[cfg(feature = "json")]
impl<T> JsonCodec<T> {
    /// The codec for values of `T`.
    pub fn new() -> JsonCodec<T> {
        JsonCodec(PhantomData)
    }
}

#[cfg(feature = "json")]
impl<T> Default for JsonCodec<T> {
    fn default() -> JsonCodec<T> {
        JsonCodec::new()
    }
}

#[cfg(feature = "json")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> EventCodec<T> for JsonCodec<T> {
    fn encode(&self, value: &T) -> Vec<u8> {
        // Serializing into a Vec fails only for types whose Serialize impl reports an error
        // (such as maps with non-string keys); such a value is written as JSON null rather
        // than panicking, and the consumer's decode will report it.
        serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|error| CodecError(error.to_string()))
    }
}

/// An event whose data was decoded into a `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedEvent<T> {
    /// The event's id.
    pub id: EventId,
    /// The id of the event this one answers or follows, if the producer gave one.
    pub parent_id: Option<EventId>,
    /// The event's namespace.
    pub namespace: String,
    /// When the server appended it: wall-clock milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The decoded data.
    pub value: T,
}

impl<T> TypedEvent<T> {
    fn decode<C: EventCodec<T>>(codec: &C, event: Event) -> Result<TypedEvent<T>, ClientError> {
        let value = codec
            .decode(&event.data)
            .map_err(|error| ClientError::Codec {
                id: event.id,
                message: error.0,
            })?;
        Ok(TypedEvent {
            id: event.id,
            parent_id: event.parent_id,
            namespace: event.namespace,
            timestamp_ms: event.timestamp_ms,
            value,
        })
    }
}

impl Client {
    /// Encodes `value` with `codec` and appends it; waits for the acknowledgement.
    pub fn produce_typed<T, C: EventCodec<T>>(
        &mut self,
        codec: &C,
        namespace: &str,
        value: &T,
    ) -> Result<Ack, ClientError> {
        self.produce(namespace, &codec.encode(value))
    }

    /// Encodes `value` with `codec` and appends it as a response to the event `parent_id`.
    pub fn respond_typed<T, C: EventCodec<T>>(
        &mut self,
        codec: &C,
        parent_id: EventId,
        namespace: &str,
        value: &T,
    ) -> Result<Ack, ClientError> {
        self.produce_event(NewEvent {
            namespace: namespace.to_string(),
            parent_id: Some(parent_id),
            data: codec.encode(value),
        })
    }
}

/// A subscription whose events are decoded with a codec. An event that does not decode is
/// yielded as [`ClientError::Codec`] and the subscription goes on.
pub struct TypedSubscription<'a, T, C: EventCodec<T>> {
    inner: Subscription<'a>,
    codec: C,
    value_type: PhantomData<fn() -> T>,
}

impl<'a> Subscription<'a> {
    /// Decodes every event of this subscription with `codec`.
    pub fn typed<T, C: EventCodec<T>>(self, codec: C) -> TypedSubscription<'a, T, C> {
        TypedSubscription {
            inner: self,
            codec,
            value_type: PhantomData,
        }
    }
}

impl<'a, T, C: EventCodec<T>> TypedSubscription<'a, T, C> {
    /// The untyped subscription, for its cursor and state.
    pub fn subscription(&self) -> &Subscription<'a> {
        &self.inner
    }
}

impl<T, C: EventCodec<T>> Iterator for TypedSubscription<'_, T, C> {
    type Item = Result<TypedEvent<T>, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        let event = self.inner.next()?;
        Some(event.and_then(|event| TypedEvent::decode(&self.codec, event)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_codecs_round_trip() {
        assert_eq!(
            RawCodec.decode(&RawCodec.encode(&vec![0, 255])),
            Ok(vec![0, 255])
        );
        let text = "héllo".to_string();
        assert_eq!(Utf8Codec.decode(&Utf8Codec.encode(&text)), Ok(text));
        assert!(Utf8Codec.decode(&[0xff]).is_err());
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_codec_round_trips_and_reports_bad_data() {
        let codec = JsonCodec::<Vec<u32>>::new();
        assert_eq!(codec.encode(&vec![1, 2]), b"[1,2]".to_vec());
        assert_eq!(codec.decode(b"[1,2]"), Ok(vec![1, 2]));
        assert!(codec.decode(b"{").is_err());
    }
}
