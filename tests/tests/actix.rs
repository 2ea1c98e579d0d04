//! The conformance scenario against the actix example app.

/// Every adapter behaviour of the scenario holds for actix.
#[test]
fn conformance_actix() {
    sqreen_conformance::run(|agent| {
        let running = example_actix::start(agent, "127.0.0.1:0".parse().expect("valid address"))
            .expect("the actix example starts");
        let addr = running.addr;
        (addr, Box::new(move || running.stop()))
    });
}
