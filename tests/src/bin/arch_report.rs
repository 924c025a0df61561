//! Prints the architecture's figures for a source tree (default: this repository), for the
//! before/after table of a restructuring: `cargo run -p allot-tests --bin arch_report [DIR]`.

use std::path::PathBuf;

use allot_tests::architecture;

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let tree = architecture::load(&root);
    let f = architecture::figures(&tree);
    println!("largest file:               {} ({} lines)", f.largest_file.0, f.largest_file.1);
    println!(
        "longest function:           {} ({} lines)",
        f.longest_function.0, f.longest_function.1
    );
    println!("api files importing actix:  {}", f.api_files_importing_actix);
    let outside = architecture::actix_outside_the_edge(&tree).len();
    println!("  of them outside the edge: {outside}");
    println!("api module cycles:          {:?}", f.api_module_cycles);
    println!("largest api file cycle:     {} files", f.api_largest_file_cycle);
    println!("crates naming tigerbeetle:  {:?}", f.crates_naming_tigerbeetle);
    let broken = architecture::violations(&tree);
    println!("invariants broken:          {}", broken.len());
    for line in &broken {
        println!("  {line}");
    }
}
