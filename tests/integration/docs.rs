//! The README documents every reason code, and only those.

use host::ReasonCode;

#[test]
fn readme_lists_exactly_the_reason_codes() {
    let readme = std::fs::read_to_string(crate::fixtures::root().join("README.md")).unwrap();
    let section = readme
        .split("## Reason codes")
        .nth(1)
        .expect("README has a `## Reason codes` section");
    let section = section.split("\n## ").next().unwrap();
    let documented: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let code: Vec<&str> = ReasonCode::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(documented, code, "README table and ReasonCode::ALL differ");
}
