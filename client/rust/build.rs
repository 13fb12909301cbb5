//! Compiles the service contract into Rust. The schema lives once, at the
//! repository root, and every client compiles it unchanged.

fn main() {
    let schema_dir = "../../schemas";
    let schema = "../../schemas/proofrace.capnp";
    println!("cargo:rerun-if-changed={schema}");
    capnpc::CompilerCommand::new()
        .src_prefix(schema_dir)
        .file(schema)
        .run()
        .expect("compiling schemas/proofrace.capnp (needs the `capnp` tool, Debian package `capnproto`)");
}
