//! `fsu_ls`: see [`rumpfs::fsu::ls`] (and `fsu_ls --help`).

fn main() {
    rumpfs::fsu::main_with("fsu_ls", || rumpfs::fsu::ls::main(std::env::args_os()))
}
