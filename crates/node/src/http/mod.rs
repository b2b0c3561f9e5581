//! The HTTP layer: each handler reads the request, calls a service, and maps the service's
//! error to a status and code ([`error`] for the native API, [`openai`] for chat).

pub mod chat;
pub mod error;
pub mod infer;
pub mod ledger;
pub mod limits;
pub mod models;
pub mod openai;
pub mod server;
