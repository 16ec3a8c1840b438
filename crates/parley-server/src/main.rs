//! The `parley` binary. See `parley --help` and the README.

fn main() -> std::process::ExitCode {
    parley_server::cli::main()
}
