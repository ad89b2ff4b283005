//! The node agent's command-line definitions, shared by the agent (`src/main.rs`) and the
//! build-time tool that writes its completions and man page (`src/dist.rs`).

pub mod cli;
