//! `parley-stub-provider`: the tests' stand-in OpenAI-compatible provider, run on its own for
//! manual trials. It prints its base URL (`http://127.0.0.1:PORT/v1`, to set as an assistant's
//! provider URL together with `PARLEY_ALLOW_PRIVATE_NETWORKS=true`) and answers every chat
//! completion with `--reply TEXT` (default "Hello from the stub.") until interrupted.

use parley_testkit::stub_provider::{Reply, StubProvider};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut reply = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reply" => reply = args.next(),
            _ => {
                eprintln!("usage: parley-stub-provider [--reply TEXT]");
                std::process::exit(2);
            }
        }
    }
    let stub = StubProvider::start().await?;
    if let Some(text) = reply {
        stub.set_default(Reply::text(text));
    }
    println!("{}", stub.base_url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
