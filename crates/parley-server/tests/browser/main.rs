//! End-to-end tests of the dashboard in headless Chromium against the real server on 127.0.0.1.
//! Screenshots land in `target/screenshots/`.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod bulk;
mod export;
mod harness;
mod inbox;
mod insights;
mod live;
mod messenger;
mod privacy;
mod providers;
mod retention;
mod review;
mod settings;
mod test_chat;
mod voice;
mod voice_call;
mod webhooks;
mod whatsapp;
mod widget;
mod xss;
