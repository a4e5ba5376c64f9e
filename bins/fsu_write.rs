//! `fsu_write`: see [`rumpfs::fsu::write`] (and `fsu_write --help`).

fn main() {
    rumpfs::fsu::main_with(
        "fsu_write",
        || rumpfs::fsu::write::main(std::env::args_os()),
    )
}
