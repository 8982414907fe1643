//! `rollcall-fuzz [--inputs N] [--seed S] [TARGET...]`: drives what rollcall reads from
//! outside with generated inputs (see `rollcall_tests::fuzz`) and prints, per target, the
//! inputs tried, how many the parser took, the rate, and every failure found. Exit 1 on a
//! failure.

use rollcall_tests::fuzz;

fn main() -> std::process::ExitCode {
    let inputs = rollcall_tests::arg("--inputs", 1_000_000);
    let seed = rollcall_tests::arg("--seed", 0x5eed);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chosen: Vec<&'static str> = fuzz::TARGETS
        .into_iter()
        .filter(|t| {
            !args.iter().any(|a| fuzz::TARGETS.contains(&a.as_str())) || args.iter().any(|a| a == t)
        })
        .collect();
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>8}",
        "TARGET", "INPUTS", "TAKEN", "PER SEC", "FAILED"
    );
    let mut failed = 0;
    for t in chosen {
        let r = fuzz::run(t, inputs, seed);
        println!(
            "{:<14} {:>10} {:>10} {:>10.0} {:>8}",
            r.target,
            r.inputs,
            r.accepted,
            r.inputs as f64 / r.seconds.max(1e-9),
            r.failed
        );
        for (input, why) in &r.failures {
            println!("  {why}\n    input: {:?}", String::from_utf8_lossy(input));
        }
        failed += r.failed;
    }
    if failed > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
