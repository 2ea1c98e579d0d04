//! Conformance suite shared by the four framework adapters; the scenario
//! lands with the adapters issue.
