//! Compiles the service contract into Rust. The crate carries its own copy of the
//! schema (`schema/proofrace.capnp`, kept byte-identical to the repository's
//! `schemas/proofrace.capnp` by a test), so it builds from a package too.

fn main() {
    let schema = "schema/proofrace.capnp";
    println!("cargo:rerun-if-changed={schema}");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file(schema)
        .run()
        .expect(
            "compiling schema/proofrace.capnp (needs the `capnp` tool, Debian package `capnproto`)",
        );
}
