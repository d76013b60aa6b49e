//! Lifecycle and status enums shared by tracking and the registry, with MLflow's spellings.

use std::fmt;

macro_rules! spelled_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Case-insensitive parse of MLflow's spelling.
            pub fn parse(raw: &str) -> Option<Self> {
                $(if raw.eq_ignore_ascii_case($text) { return Some(Self::$variant); })+
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled_enum!(RunStatus {
    Running => "RUNNING",
    Scheduled => "SCHEDULED",
    Finished => "FINISHED",
    Failed => "FAILED",
    Killed => "KILLED",
});

spelled_enum!(LifecycleStage {
    Active => "active",
    Deleted => "deleted",
});

spelled_enum!(ViewType {
    ActiveOnly => "ACTIVE_ONLY",
    DeletedOnly => "DELETED_ONLY",
    All => "ALL",
});

spelled_enum!(ModelStage {
    None => "None",
    Staging => "Staging",
    Production => "Production",
    Archived => "Archived",
});

spelled_enum!(LoggedModelStatus {
    Unspecified => "LOGGED_MODEL_STATUS_UNSPECIFIED",
    Pending => "LOGGED_MODEL_PENDING",
    Ready => "LOGGED_MODEL_READY",
    Failed => "LOGGED_MODEL_UPLOAD_FAILED",
});

impl ViewType {
    /// The lifecycle stages a view includes.
    pub fn stages(&self) -> &'static [&'static str] {
        match self {
            ViewType::ActiveOnly => &["active"],
            ViewType::DeletedOnly => &["deleted"],
            ViewType::All => &["active", "deleted"],
        }
    }
}
