//! `fsu_rm`: see [`rumpfs::fsu::rm`] (and `fsu_rm --help`).

fn main() {
    rumpfs::fsu::main_with("fsu_rm", || rumpfs::fsu::rm::main(std::env::args_os()))
}
