//! Server-rendered pages: the overview (`/`) and the mission console (`/console`, each panel
//! also a fragment of its own). Templates are maud, which escapes every interpolated string,
//! so hostnames, summaries and other agent-supplied text can never inject markup. Pages load
//! no external resources and the server sends a strict Content-Security-Policy.
//!
//! - [`add_node`]: the "Add node" page's handlers and forms (enrollment tokens).
//! - [`handlers`]: the axum handlers — extract, read the state, pick the view; no markup.
//! - [`forms`]: the typed queries and the console's form, checked, with their own error.
//! - [`view`]: the pages and the console's panels, from plain data and a clock.
//! - [`components`]: the small fragments the views share (pills, marks, banners, rows).
//! - [`format`]: pure text formatting (ages, percentages, a level's word).

pub mod add_node;
pub mod components;
pub mod format;
pub mod forms;
pub mod handlers;
pub mod view;

#[cfg(test)]
mod tests;
