//! Generate the server side of the KurrentDB protocol from the .proto files
//! copied from the `kurrentdb` client crate. `protox` compiles them in pure
//! Rust, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["protos/streams.proto", "protos/serverfeatures.proto", "protos/gossip.proto"];
    for file in files.iter().chain(&["protos/shared.proto", "protos/status.proto", "protos/code.proto"]) {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["protos"])?;
    tonic_build::configure().build_client(false).build_server(true).build_transport(false).compile_fds(descriptors)?;
    Ok(())
}
