//! OTLP export without the SDK's export pipeline: spans and log records are queued as the
//! server's own records, encoded in one pass into OTLP protobuf ([`encode`], [`wire`]) and
//! sent over gRPC or HTTP ([`transport`]). Profiling showed about 30 % of the server's CPU
//! in the generic path (SpanData to proto structs, prost's encoding, tonic's layers).

pub mod encode;
pub mod transport;
pub mod wire;
