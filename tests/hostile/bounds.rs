//! Hostile cases: bounds.

use crate::common::FloProcess;
use crate::support::assert_survived;

/// The baseline the other cases compare with: an untouched server passes the check.
#[test]
fn an_untouched_server_passes_the_survival_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = FloProcess::start(dir.path(), &[]);
    assert_survived(&mut server, 64 * 1024 * 1024);
}
