//! `mltrail openapi`: the native API's OpenAPI 3.1 document, as `/api/v1/openapi.json` serves
//! it, without a server (to generate a client, or to check the document in CI).

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct OpenapiArgs {
    /// The document of a serving process (`mltrail serve`: scoring, feedback, predictions)
    /// instead of the tracking server's.
    #[arg(long)]
    serving: bool,
}

pub fn print(args: &OpenapiArgs) -> Result<()> {
    let document = if args.serving {
        mltrail_server::scoring::openapi_document()
    } else {
        mltrail_server::openapi_document()
    };
    let text = serde_json::to_string_pretty(&document).context("cannot render the document")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("cannot write the document")?;
    Ok(())
}
