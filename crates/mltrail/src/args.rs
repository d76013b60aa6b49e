//! Arguments that several subcommands share, flattened into each with `#[command(flatten)]` so a
//! flag has one name, one meaning and one parser everywhere. A command that words a flag's help
//! for its own output rewrites it with `#[command(mut_arg(...))]`.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::tracking_client::{resolve_uri, Client, TRACKING_URI_HELP};

// How a client command reaches the tracking server. (Plain comments on these structs: a doc
// comment on a flattened struct would become the about text of the command holding it.)
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct ClientArgs {
    #[arg(long, help = TRACKING_URI_HELP)]
    pub tracking_uri: Option<String>,
}

impl ClientArgs {
    /// The server's URL: the flag, then MLTRAIL_TRACKING_URI, then MLFLOW_TRACKING_URI, then the
    /// default.
    pub fn uri(&self) -> String {
        resolve_uri(self.tracking_uri.clone())
    }

    pub fn client(&self) -> Result<Client> {
        Client::new(self.uri())
    }
}

// Whether a command prints JSON instead of a table.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonArgs {
    #[arg(long, help = "Print JSON instead of a table")]
    pub json: bool,
}

// How many items a listing command prints at most. Each command gives its own default with
// `#[command(mut_arg("limit", |a| a.default_value("50")))]`. (Not a const generic: clap keeps a
// derived default in a static that every instance of a generic struct would share.)
#[derive(Debug, Clone, Copy, Args)]
pub struct LimitArgs {
    #[arg(long, required = false)]
    pub limit: i64,
}
