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
/// The artifact path of an ONNX file mltrail derived from the version's logged model (a
/// scikit-learn pickle converted by skl2onnx): what serving reads instead of converting again.
pub const DERIVED_ONNX: &str = "mltrail.derived_onnx";
/// BLAKE3 of that derived ONNX file.
pub const DERIVED_ONNX_DIGEST: &str = "mltrail.derived_onnx_digest";
/// How the ONNX file was derived, as JSON: the flavor and file it came from (with its BLAKE3),
/// the converter's versions and the check against the logged input example.
pub const DERIVED_FROM: &str = "mltrail.derived_from";
