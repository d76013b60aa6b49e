//! The tags mltrail writes on model versions, named once: the registry writes some, serving and
//! monitoring read them, and `mltrail models register` writes the rest.

/// The input columns as an MLflow signature JSON list (`[{"name": …, "type": …}, …]`).
pub const SIGNATURE: &str = "mltrail.signature";
/// BLAKE3 of the registered ONNX file.
pub const ONNX_DIGEST: &str = "mltrail.onnx_digest";
/// The runtime that will serve the version (`native` or `onnxruntime`).
pub const ENGINE: &str = "mltrail.engine";
/// The dataset version (`NAME@VERSION`) the model version was trained on: what monitors compare
/// with when their reference is `training`.
pub const TRAINING_DATA: &str = "mltrail.training_data";
/// The content digest of that dataset version.
pub const TRAINING_DATA_DIGEST: &str = "mltrail.training_data_digest";
/// Which input columns are personal data and which names the person a row is about
/// (`{"subject": COLUMN, "pii": [COLUMN, …]}`, [`crate::privacy::PrivacySpec`]): their values
/// are stored sealed per subject.
pub const PRIVACY: &str = "mltrail.privacy";
