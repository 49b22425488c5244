//! Entry points for the `ricochet-fuzz` harness (feature `fuzzing`): the embedded OTLP
//! sink's request decoders, without a socket. Not an API; it exists only for the fuzz
//! harness.

use bytes::Bytes;

use crate::sink::{Store, decode_export, grpc_message};

/// What the sink does with the body of a unary OTLP/gRPC `Export` call (traces or logs):
/// unframes it, decodes the protobuf message and records it in `store`; `Err` is the
/// refusal sentence.
pub fn otlp_grpc(store: &Store, traces: bool, body: &[u8]) -> Result<(), String> {
    let message = grpc_message(&Bytes::copy_from_slice(body)).map_err(|(_, why)| why)?;
    decode_export(store, traces, false, message)
}

/// What the sink does with the body of an OTLP/HTTP `POST /v1/traces` or `/v1/logs`
/// (protobuf, or JSON when `json`): decodes it and records it in `store`.
pub fn otlp_http(store: &Store, traces: bool, json: bool, body: &[u8]) -> Result<(), String> {
    decode_export(store, traces, json, Bytes::copy_from_slice(body))
}
