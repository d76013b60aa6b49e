//! Serving: the model runtime (native ONNX-ML evaluators; onnxruntime for other graphs), request
//! decoding and validation against a model's signature, and the durable prediction log.
//!
//! This crate knows nothing about HTTP or the metadata store: the server and the CLI hand it model
//! bytes and decoded requests, and give it a directory for log segments.

pub mod archive;
pub mod predlog;
pub mod request;
pub mod response;
pub mod runtime;
pub mod signature;
