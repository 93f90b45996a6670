//! What several modules' unit tests share.

use std::sync::mpsc;

/// Runs `check` again and again on a thread of its own for as long as
/// `work` runs, and asserts that it ran more than ten times and never
/// reported a problem (a check racing a writer, say).
pub fn assert_never_reports_while(
    check: impl Fn() -> Vec<String> + Send + 'static,
    work: impl FnOnce(),
) {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let checker = std::thread::spawn(move || {
        let (mut runs, mut problems) = (0u32, Vec::new());
        while stop_rx.try_recv().is_err() {
            problems.extend(check());
            runs += 1;
        }
        (runs, problems)
    });
    work();
    let _ = stop_tx.send(());
    let (runs, problems) = checker.join().expect("the check's thread");
    assert!(
        problems.is_empty(),
        "{} problems over {runs} runs, the first: {:?}",
        problems.len(),
        problems.first()
    );
    assert!(runs > 10, "the check ran {runs} times only");
}
