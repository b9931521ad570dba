//! Compiles the C++ shim over libtorch's c10d (TCPStore, ProcessGroupGloo) against the headers
//! of the libtorch this workspace links, and embeds the libtorch rpath (see `ssl-build`).
fn main() {
    ssl_build::link_libtorch();
    println!("cargo:rerun-if-changed=cpp");
    let Some(includes) = ssl_build::libtorch_include_dirs() else {
        panic!("ssl-dist: set LIBTORCH (or run `cargo xtask setup`) so the c10d headers can be found");
    };
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("cpp/shim.cpp")
        .include("cpp/gloo_decls")
        .define("USE_C10D_GLOO", "1")
        // libtorch 2.x is built with the C++11 string ABI.
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false);
    for dir in includes {
        build.include(dir);
    }
    build.compile("ssl_dist_shim");
    // The shim's symbols live in libtorch_cpu, which must come after it on the link line.
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
