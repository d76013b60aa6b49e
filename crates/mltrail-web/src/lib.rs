//! mltrail-web renders the web UI that `mltrail server` serves at `/`: whole HTML pages written
//! with maud (every value escaped unless a chart marks its own SVG, which escapes its labels),
//! charts drawn as SVG on the server ([`chart`]), one stylesheet and one small script embedded
//! in the binary. A page works without JavaScript; the script only adds conveniences (it turns
//! the mlflow client's `/#/…` links into page addresses and selects all runs).
//!
//! It knows the store's records and nothing of HTTP, SQL or where they came from: the server's
//! `ui` module fetches what a page needs (with the caller's permissions) and hands it here.

pub mod api;
pub mod audit;
pub mod business;
pub mod card;
pub mod chart;
pub mod datasets;
pub mod deployments;
pub mod experiments;
pub mod layout;
pub mod live;
pub mod monitors;
pub mod predictions;
pub mod rankings;
pub mod registry;
pub mod runs;
pub mod server;

pub use layout::{Section, Viewer};
