//! Serving owns deployments: the model runtime (native ONNX-ML evaluators; onnxruntime for other
//! graphs), request decoding and validation against a model's signature, the deployment that
//! scores, swaps and follows an alias ([`deployment`]), and the durable prediction log with its
//! typed records ([`record`]) and Parquet archive. Explanations are computed elsewhere
//! (mltrail-explain) behind [`explanation::Explainers`]; serving decides when and stores them.
//!
//! This crate knows nothing about HTTP: the server decodes bodies and calls [`deployment`]. It
//! reaches model versions only through a [`deployment::ModelSource`]; the one over the metadata
//! and artifact stores is here ([`deployment::StoreSource`]), the one over the tracking server's
//! REST API is the CLI's.

pub mod archive;
pub mod archive_read;
pub mod catalog;
pub mod deployment;
pub mod explanation;
pub mod flavors;
pub mod predlog;
pub mod privacy;
pub mod ranking;
pub mod record;
pub mod request;
pub mod response;
pub mod routing;
pub mod runtime;
pub mod segment_tree;
pub mod signature;
mod spilled_index;
pub mod training;
