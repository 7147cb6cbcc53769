//! The `wework-archive` command: everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    wework_archive::cli::main()
}
