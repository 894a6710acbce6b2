//! Echo upstream for tests and the demo. (Filled in by the harness work.)
fn main() {}
