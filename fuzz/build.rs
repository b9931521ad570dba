//! Build script: embeds the libtorch library folder as an rpath (see `ssl-build`).
fn main() {
    ssl_build::link_libtorch();
}
