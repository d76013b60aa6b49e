//! Identifier newtypes. Their formats are fixed by the MLflow API: experiment ids are decimal
//! strings, run ids 32 hex digits, logged-model ids `m-` + 32 hex digits, model versions
//! positive integers. Monitors and alerts are mltrail's own: opaque strings it generates.

use std::fmt;

macro_rules! string_id {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(RunId);
string_id!(LoggedModelId);
string_id!(MonitorId);
string_id!(AlertId);

/// A model version's number within its registered model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelVersionNumber(pub i64);

impl ModelVersionNumber {
    /// Versions arrive as strings in MLflow's API: a positive integer.
    pub fn parse(raw: &str) -> Option<Self> {
        raw.trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v > 0)
            .map(ModelVersionNumber)
    }
}

impl fmt::Display for ModelVersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! opaque_id {
    ($name:ident) => {
        impl $name {
            /// A new id (UUIDv7, 32 hex digits).
            pub fn generate() -> Self {
                $name(uuid::Uuid::now_v7().simple().to_string())
            }
        }

        /// Ids of mltrail's own resources are opaque: any text names one, or none.
        impl From<String> for $name {
            fn from(raw: String) -> Self {
                $name(raw)
            }
        }

        impl From<&str> for $name {
            fn from(raw: &str) -> Self {
                $name(raw.to_string())
            }
        }
    };
}

opaque_id!(MonitorId);
opaque_id!(AlertId);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExperimentId(pub i64);

impl ExperimentId {
    pub fn parse(raw: &str) -> Option<Self> {
        raw.trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(ExperimentId)
    }
}

impl fmt::Display for ExperimentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl RunId {
    pub fn generate() -> Self {
        RunId(uuid::Uuid::now_v7().simple().to_string())
    }

    /// Run ids are 32 hex digits; anything else cannot name a run. The spelling is kept as
    /// given: ids are stored lowercase and looked up exactly, so an uppercase spelling names
    /// no run (as in MLflow).
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| RunId(raw.to_string()))
    }
}

impl LoggedModelId {
    pub fn generate() -> Self {
        LoggedModelId(format!("m-{}", uuid::Uuid::now_v7().simple()))
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix("m-")?;
        let ok = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| LoggedModelId(raw.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let run = RunId::generate();
        assert_eq!(RunId::parse(run.as_str()), Some(run));
        let model = LoggedModelId::generate();
        assert_eq!(LoggedModelId::parse(model.as_str()), Some(model));
        assert!(RunId::parse("../../etc").is_none());
        assert!(ExperimentId::parse("-1").is_none());
        assert_eq!(
            ModelVersionNumber::parse(" 3 "),
            Some(ModelVersionNumber(3))
        );
        assert!(ModelVersionNumber::parse("0").is_none());
        let monitor = MonitorId::generate();
        assert_eq!(MonitorId::from(monitor.as_str()), monitor);
    }
}
