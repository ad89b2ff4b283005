//! Page-level templates: the overview ([`dashboard`]) and the mission console ([`console`],
//! whose panels are fragments too), the "Add node" page ([`tokens`]), and the SVG charts of a node's history ([`chart`]). Views
//! take plain data and the clock; they read no state, so tests render them without a server.

pub mod chart;
pub mod console;
pub mod dashboard;
pub mod tokens;

use vaultmesh_proto::NodeSummary;

/// Sorts nodes as every list shows them: worst first (CRIT, ATTN, OK), then by the name shown
/// (the display name, else the hostname: [`NodeSummary::name`]) by code point, then by node id
/// (two nodes may show the same name). The console's script orders moved rows the same way.
pub fn worst_first(nodes: &mut [NodeSummary]) {
    nodes.sort_by(|a, b| {
        b.attention
            .level
            .cmp(&a.attention.level)
            .then_with(|| a.name().cmp(b.name()))
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
}
