//! The `wework-archive` command: everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    // Before anything holds a secret: an abort (the SDK aborts on some inputs,
    // PROTOCOL.md) must not write corp secrets, private keys and plaintexts
    // to a core file, and other users' debuggers must not attach.
    wework_archive::hardening::no_core_dumps();
    wework_archive::cli::main()
}
