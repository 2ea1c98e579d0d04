//! Helpers shared by the integration tests of this directory.

use sqreen_core::{Agent, Open, RequestInfo};

/// Opens a request and copies it at once, as an adapter's extractor does
/// when a handler asks for the handle.
pub fn opened<'a>(agent: &Agent, info: RequestInfo<'a>, body: Option<&'a [u8]>) -> Open {
    match agent.open(|| info, body) {
        Open::Request(mut slot) => {
            slot.handle_with(|| info);
            Open::Request(slot)
        }
        other => other,
    }
}
