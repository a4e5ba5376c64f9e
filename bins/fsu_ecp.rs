//! `fsu_ecp`: see [`rumpfs::fsu::ecp`] (and `fsu_ecp --help`).

fn main() {
    rumpfs::fsu::main_with("fsu_ecp", || rumpfs::fsu::ecp::main(std::env::args_os()))
}
