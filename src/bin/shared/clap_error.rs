//! What both binaries do with a clap error: say it in one line.

/// A clap error as one line: the lines before its usage block (or its "For more information"
/// line), joined, without `error: `,
/// and clap's tips (`a similar argument exists: '--namespace'`), which a new user needs most
/// (walk10: `--namepsace` and `groups lis` lost them). A stray value that looks like a
/// namespace gets the tip that namespaces go with `-n` (clap's own tip, `use '-- /a/b'`,
/// leads nowhere).
pub fn one_line(error: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let text = error.to_string();
    let mut parts: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() || line.starts_with("tip: to pass '") {
            continue;
        }
        match line.starts_with("tip:") {
            true => parts.push(format!("({line})")),
            false => parts.push(line.to_string()),
        }
    }
    let stray = match (error.kind(), error.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(value))) => Some(value.clone()),
        _ => None,
    };
    if let Some(value) = stray.filter(|value| value.starts_with('/')) {
        parts.push(format!(
            "(tip: the namespace or glob goes with -n, as in -n {value})"
        ));
    }
    let joined = parts.join(" ");
    joined
        .strip_prefix("error: ")
        .unwrap_or(&joined)
        .to_string()
}
