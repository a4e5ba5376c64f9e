//! `fsu_mkdir`: see [`rumpfs::fsu::mkdir`] (and `fsu_mkdir --help`).

fn main() {
    rumpfs::fsu::main_with(
        "fsu_mkdir",
        || rumpfs::fsu::mkdir::main(std::env::args_os()),
    )
}
