//! The conformance scenario against the warp example app.

/// Every adapter behaviour of the scenario holds for warp.
#[test]
fn conformance_warp() {
    sqreen_conformance::run(|agent| {
        let running = example_warp::start(agent, "127.0.0.1:0".parse().expect("valid address"))
            .expect("the warp example starts");
        let addr = running.addr;
        (addr, Box::new(move || running.stop()))
    });
}
