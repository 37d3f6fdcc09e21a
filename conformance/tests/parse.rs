//! Every scenario file parses, names are unique, and there are enough of them.

use conformance::scenario::Scenario;

#[test]
fn every_scenario_file_parses() {
    let scenarios =
        Scenario::load_dir(&conformance::scenarios_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(scenarios.len() >= 40, "only {} scenarios", scenarios.len());
    for (path, scenario) in &scenarios {
        let stem = path.file_stem().unwrap().to_string_lossy();
        assert_eq!(
            stem,
            scenario.name,
            "{} must be named after its scenario",
            path.display()
        );
    }
}
