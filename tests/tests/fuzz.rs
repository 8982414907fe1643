//! A short fuzzing pass in every run: each parser of outside input, 50,000 generated inputs
//! from a seed that changes daily (so CI explores), none of which may panic or break its
//! contract. `cargo run --release -p rollcall-tests --bin rollcall-fuzz` runs millions.

use rollcall_tests::fuzz;

#[test]
fn parsers_of_outside_input_survive_generated_inputs() {
    let day = chrono::Utc::now().date_naive().to_string();
    let seed = day.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut failures = Vec::new();
    for t in fuzz::TARGETS {
        let r = fuzz::run(t, 50_000, seed);
        assert_eq!(r.inputs, 50_000);
        assert!(
            r.accepted > 0,
            "{t}: no generated input was valid: the seeds are broken"
        );
        for (input, why) in r.failures {
            failures.push(format!(
                "{t} (seed {seed}): {why}; input {:?}",
                String::from_utf8_lossy(&input)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
