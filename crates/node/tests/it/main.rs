//! The node over real sockets, as one test binary.

mod api;
mod chat;
mod common;
mod openai_client;
mod resources;
