//! HTTP integration tests of the JSON API: the real app on 127.0.0.1, a fresh database per test.

mod channel_support;
mod helpers;

mod assistants;
mod cli;
mod conversations;
mod dashboard;
mod errors;
mod list;
mod openapi;
mod python_client;
mod scale;
mod search;
mod telegram;
mod tenancy;
mod transfer;
mod whatsapp;
mod widget;
