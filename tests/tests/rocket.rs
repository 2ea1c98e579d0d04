//! The conformance scenario against the rocket example app.

/// Every adapter behaviour of the scenario holds for rocket.
#[test]
fn conformance_rocket() {
    sqreen_conformance::run(|agent| {
        let running = example_rocket::start(agent, "127.0.0.1:0".parse().expect("valid address"))
            .expect("the rocket example starts");
        let addr = running.addr;
        (addr, Box::new(move || running.stop()))
    });
}
