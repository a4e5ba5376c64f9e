//! Shared front-end code of the rumpfs commands (being written).
