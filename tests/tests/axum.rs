//! The conformance scenario against the axum example app.

/// Every adapter behaviour of the scenario holds for axum.
#[test]
fn conformance_axum() {
    sqreen_conformance::run(|agent| {
        let running = example_axum::start(agent, "127.0.0.1:0".parse().expect("valid address"))
            .expect("the axum example starts");
        let addr = running.addr;
        (addr, Box::new(move || running.stop()))
    });
}
