//! `flo --config FILE`: a TOML file whose keys are the long flag names (without `--`), and
//! `flo --check-config`, which prints the effective settings in the same format.
//!
//! The file is turned into command-line arguments and parsed by the same clap definitions as
//! the flags, so a value means the same thing in both places and is checked by the same
//! parser. A flag given on the command line replaces the file's key entirely (for a repeated
//! flag such as `--peer-addr`, the file's whole list).

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// Flags that make no sense in a configuration file: the file itself, the one-shot actions,
/// and `--repair`, which must be a deliberate, single start (a file would repair on every
/// start and hide damage).
const COMMAND_LINE_ONLY: &[&str] = &["config", "check-config", "repair", "help", "version"];

/// A configuration file larger than this is refused (it is read whole into memory).
pub const CONFIG_FILE_SIZE_MAX: u64 = 1 << 20;

/// Reads `path` and returns the arguments it stands for, leaving out the keys that
/// `matches` (the command line) already sets. Errors are one line naming the file and key.
pub fn file_arguments(
    path: &Path,
    command: &Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, String> {
    let shown = path.display();
    let text = crate::bounded_file::read_text_file(path, CONFIG_FILE_SIZE_MAX, "config file")?;
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let message = error.message().trim().replace('\n', "; ");
        match error.span() {
            Some(span) => format!(
                "{shown}: line {}: {message}",
                text[..span.start].matches('\n').count() + 1
            ),
            None => format!("{shown}: {message}"),
        }
    })?;
    let mut arguments = Vec::new();
    for (key, value) in &table {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()))
            .filter(|_| !COMMAND_LINE_ONLY.contains(&key.as_str()))
            .ok_or_else(|| {
                if COMMAND_LINE_ONLY.contains(&key.as_str()) {
                    format!("{shown}: key {key:?} is only accepted on the command line")
                } else {
                    format!(
                        "{shown}: unknown key {key:?} (the keys are the long flag names \
                         without --, such as data-dir; see flo --help)"
                    )
                }
            })?;
        if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let error = |expected: &str| format!("{shown}: key {key:?} must be {expected}");
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(true)) => {
                arguments.push(OsString::from(format!("--{key}")))
            }
            (ArgAction::SetTrue, toml::Value::Boolean(false)) => {}
            (ArgAction::SetTrue, _) => return Err(error("true or false")),
            (ArgAction::Append, toml::Value::Array(items)) => {
                for item in items {
                    let item = scalar_text(item).ok_or_else(|| error("a list of strings"))?;
                    arguments.push(OsString::from(format!("--{key}={item}")));
                }
            }
            (_, value) => {
                let text = scalar_text(value).ok_or_else(|| error("a string or a number"))?;
                arguments.push(OsString::from(format!("--{key}={text}")));
            }
        }
    }
    Ok(arguments)
}

/// A string or an integer as the text a flag would carry.
fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        _ => None,
    }
}

pub use flo::units::format_duration_ms;

/// A byte count in the largest binary unit that divides it (`64M`), as the flags accept it.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, unit) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_values_parse_back_to_the_same_number() {
        for ms in [0, 1, 250, 1000, 90_000, 300_000, 3_600_000, 7 * 86_400_000] {
            assert_eq!(
                flo::units::parse_duration_ms(&format_duration_ms(ms)),
                Ok(ms)
            );
        }
        for bytes in [0, 1, 4096, 64 << 20, (1 << 30) + 1, 3 << 40] {
            assert_eq!(flo::units::parse_size(&format_size(bytes)), Ok(bytes));
        }
    }
}
