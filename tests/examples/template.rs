//! Writes `template.yaml` from `template.in.yaml` and the provider table
//! (`scripts/template` runs this). See `hookgate_tests::template_source`.

use std::path::Path;

use hookgate_tests::template_source::{generate, OUTPUT, SOURCE};

fn main() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = std::fs::read_to_string(root.join(SOURCE))
        .map_err(|error| format!("cannot read {SOURCE}: {error}"))?;
    let generated = generate(&source)?;
    std::fs::write(root.join(OUTPUT), generated)
        .map_err(|error| format!("cannot write {OUTPUT}: {error}"))?;
    eprintln!("wrote {OUTPUT} from {SOURCE} and the provider table");
    Ok(())
}
