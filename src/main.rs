//! The `tether` command: run commands, move files and inspect hosts from a
//! shell or a script.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
