//! Progress of long runs: a bar on a terminal (indicatif), nothing otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over entries that draws on stderr only when stderr is a terminal, so
/// scripts and tests see a quiet run and one summary line on stdout.
/// `total` is the number of entries expected, when known.
pub(super) fn entries_bar(what: &str, total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = match total {
        Some(_) => "{msg} [{elapsed_precise}] {bar:40} {pos}/{len} entries ({per_sec}, eta {eta})",
        None => "{msg} [{elapsed_precise}] {pos} entries ({per_sec})",
    };
    let style = ProgressStyle::with_template(template).expect("a valid template");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}
