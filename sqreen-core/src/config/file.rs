//! Config files: their format (TOML or YAML, by extension) and their
//! parsing into [`FileEntries`], with errors that give a position but never
//! quote the file (it may hold the token).

use std::path::Path;

use super::ConfigError;
use super::keys::FileEntries;

/// The formats of a config file, chosen by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileFormat {
    Toml,
    Yaml,
}

impl FileFormat {
    pub(super) fn of(path: &Path) -> Result<Self, ConfigError> {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("toml") => Ok(FileFormat::Toml),
            Some("yml" | "yaml") => Ok(FileFormat::Yaml),
            _ => Err(ConfigError::Parse {
                path: path.to_owned(),
                message: "unsupported file extension; expected `.toml`, `.yml` or `.yaml`"
                    .to_owned(),
            }),
        }
    }

    /// Parses `text`, reporting errors by position only: the parsers' own
    /// messages may quote the offending line, which can hold the token.
    pub(super) fn parse(self, path: &Path, text: &str) -> Result<FileEntries, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        match self {
            FileFormat::Toml => toml::from_str::<FileEntries>(text).map_err(|error| {
                let message = error.message().trim_end();
                parse_error(match error.span() {
                    Some(span) => {
                        let (line, column) = line_column(text, span.start);
                        format!("{message} at line {line}, column {column}")
                    }
                    None => message.to_owned(),
                })
            }),
            // An empty YAML document is null, not an empty mapping.
            FileFormat::Yaml => serde_yaml_ng::from_str::<Option<FileEntries>>(text)
                .map(Option::unwrap_or_default)
                .map_err(|error| parse_error(error.to_string())),
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}
