//! Discovers the kernel in a dump and prints what was found: `cargo run --example discover DUMP`.

use vmi_arch_x86 as _;
use vmi_backend_file as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: discover DUMP")?;
    let t = std::time::Instant::now();
    let session = vmi_core::Session::open(&path, &Default::default())?;
    let kernel = vmi_os_linux::discover(&session)?;
    let p = kernel.profile();
    println!("{}", kernel.banner().trim_end());
    println!(
        "slide {:#x}, {} symbols, {} types, init_task at {}, task_struct {} bytes, pid at +{}",
        kernel.virtual_slide(),
        p.symbol_count(),
        p.user_types().count(),
        kernel.symbol("init_task")?,
        p.struct_size("task_struct")?,
        p.field_offset("task_struct", "pid")?
    );
    println!("in {:?}", t.elapsed());
    Ok(())
}
