//! `fsu_cat`: see [`rumpfs::fsu::cat`] (and `fsu_cat --help`).

fn main() {
    rumpfs::fsu::main_with("fsu_cat", || rumpfs::fsu::cat::main(std::env::args_os()))
}
