//! `custodian examples`: a working example line for every check type.

use crate::cli::ExamplesArgs;
use std::process::ExitCode;

pub(crate) fn examples(args: &ExamplesArgs) -> ExitCode {
    let pattern = args.pattern.as_deref().unwrap_or("").to_ascii_lowercase();
    let mut shown = 0;
    for probe in custodian_probes::PROBES {
        let spec = probe.spec;
        if !spec.name.contains(&pattern) && !spec.example.to_ascii_lowercase().contains(&pattern) {
            continue;
        }
        println!("# {}: {}", spec.name, spec.summary);
        for p in spec.params {
            println!("#   {} — {}", p.phrase, p.help);
        }
        println!("{}\n", spec.example);
        shown += 1;
    }
    if shown == 0 {
        eprintln!("no check type matches {pattern:?}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    ExitCode::SUCCESS
}
