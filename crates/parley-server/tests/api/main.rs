//! HTTP integration tests of the JSON API: the real app on 127.0.0.1, a fresh database per test.

mod channel_security;
mod channel_support;
mod helpers;
mod processes;

mod assistants;
mod bidi;
mod calls;
mod cli;
mod conversations;
mod dashboard;
mod durability;
mod error_bodies;
mod errors;
mod events;
mod import_memory;
mod insights;
mod keys;
mod list;
mod openapi;
mod operations;
mod peaks;
mod providers;
mod python_client;
mod scale;
mod schemathesis;
mod search;
mod signin;
mod streaming;
mod telegram;
mod tenancy;
mod transfer;
mod two_servers;
mod whatsapp;
mod widget;
mod widget_keys;
