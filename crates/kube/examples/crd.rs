//! Prints the `PostgresInstance` CRD: `cargo run -p strata-kube --example crd`.

fn main() {
    print!("{}", strata_kube::crd::crd_yaml());
}
