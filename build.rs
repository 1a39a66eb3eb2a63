// Compiles the one piece of C: long double arithmetic for INCRBYFLOAT
// (see csrc/long_double.c).
fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    cc::Build::new()
        .file("csrc/long_double.c")
        .warnings(true)
        .compile("quire_long_double");
}
