//! A model version ready to serve: the compiled model, its signature, and what its records and
//! answers name it by.

use mltrail_core::privacy::PrivacySpec;

use std::sync::Arc;

use crate::request::{SealPlan, SealPlanError};
use crate::response;
use crate::runtime::Model;
use crate::signature::Signature;

pub struct LoadedModel {
    pub name: String,
    pub version: String,
    /// BLAKE3 of the ONNX file.
    pub digest: String,
    pub model: Model,
    pub signature: Signature,
    pub output_names: Vec<String>,
    /// The output names escaped as JSON keys, once.
    pub(crate) output_keys: Vec<Vec<u8>>,
    /// The dataset version the model was trained on (`NAME@VERSION`), when recorded.
    pub training_data: Option<String>,
    /// Which input columns are personal data, sealed per subject in the log (the version's
    /// `mltrail.privacy` tag), and how its rows are then written.
    pub privacy: Option<Arc<SealPlan>>,
}

impl LoadedModel {
    pub fn new(
        name: String,
        version: String,
        digest: String,
        model: Model,
        signature: Signature,
    ) -> Self {
        let output_names = model.output_names();
        let output_keys = response::json_keys(&output_names);
        Self {
            name,
            version,
            digest,
            model,
            signature,
            output_names,
            output_keys,
            training_data: None,
            privacy: None,
        }
    }

    /// Seals what `spec` marks (checked against the model's columns).
    pub fn with_privacy(mut self, spec: Option<PrivacySpec>) -> Result<Self, SealPlanError> {
        self.privacy = spec
            .map(|spec| SealPlan::new(spec, &self.signature).map(Arc::new))
            .transpose()?;
        Ok(self)
    }

    pub fn with_training_data(mut self, training_data: Option<String>) -> Self {
        self.training_data = training_data;
        self
    }
}
