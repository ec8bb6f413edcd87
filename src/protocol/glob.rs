//! Namespace globs, as a Subscribe frame carries them. `protocol.md` ("Namespace globs")
//! describes the same rules for client writers; the tests below pin the behaviour of the
//! `glob` crate we rely on, so an upgrade that changes it fails here first.

use std::fmt;

use glob::{MatchOptions, Pattern};

/// `*` and `?` never match `/`, `**` must be a whole path segment, and a leading `.` is an
/// ordinary character.
const MATCH_OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A compiled namespace glob such as `/food/*/eggs` or `/food/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceGlob {
    pattern: Pattern,
}

/// Why a glob was refused. On the wire it is [`ErrorCode::InvalidGlob`].
///
/// [`ErrorCode::InvalidGlob`]: super::ErrorCode::InvalidGlob
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobError {
    Empty,
    MissingLeadingSlash,
    /// The pattern syntax is invalid, for example `/a**`, `/***` or an unclosed `[`.
    Syntax {
        /// The character index the `glob` crate points at (roughly where the problem is).
        position: usize,
        message: String,
    },
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::Empty => write!(f, "glob is empty"),
            GlobError::MissingLeadingSlash => {
                write!(
                    f,
                    "glob must start with '/' (use /** to match every namespace)"
                )
            }
            GlobError::Syntax { position, message } => {
                write!(f, "invalid glob near position {position}: {message}")
            }
        }
    }
}

impl std::error::Error for GlobError {}

impl NamespaceGlob {
    /// Compiles `pattern`: it must be non-empty, start with `/`, and be valid glob syntax.
    pub fn new(pattern: &str) -> Result<NamespaceGlob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if !pattern.starts_with('/') {
            return Err(GlobError::MissingLeadingSlash);
        }
        match Pattern::new(pattern) {
            Ok(pattern) => Ok(NamespaceGlob { pattern }),
            Err(error) => Err(GlobError::Syntax {
                position: error.pos,
                message: error.msg.to_string(),
            }),
        }
    }

    pub fn matches(&self, namespace: &str) -> bool {
        self.pattern.matches_with(namespace, MATCH_OPTIONS)
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        self.pattern.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts which of `namespaces` the glob matches, and that it matches no other.
    fn assert_matches(glob: &str, matching: &[&str], not_matching: &[&str]) {
        let compiled = NamespaceGlob::new(glob).expect("valid glob");
        for namespace in matching {
            assert!(
                compiled.matches(namespace),
                "{glob} should match {namespace}"
            );
        }
        for namespace in not_matching {
            assert!(
                !compiled.matches(namespace),
                "{glob} should not match {namespace}"
            );
        }
    }

    #[test]
    fn a_glob_without_wildcards_matches_exactly() {
        assert_matches(
            "/food/eggs",
            &["/food/eggs"],
            &["/food/eggs/", "/food", "/Food/eggs"],
        );
    }

    #[test]
    fn a_star_stays_within_one_segment_and_may_be_empty() {
        assert_matches(
            "/food/*",
            &["/food/eggs", "/food/", "/food/.hidden"],
            &["/food", "/food/a/b", "/foodie"],
        );
        assert_matches(
            "/food/*/eggs",
            &["/food/a/eggs"],
            &["/food/eggs", "/food/a/b/eggs"],
        );
        assert_matches("/a*b", &["/ab", "/axxb"], &["/a/b"]);
    }

    #[test]
    fn a_double_star_matches_any_depth_below_its_parent() {
        // `/food/**` matches everything under `/food/` but not `/food` itself.
        assert_matches(
            "/food/**",
            &["/food/", "/food/a", "/food/a/b", "/food/a/b/c"],
            &["/food", "/foodie", "/drink/food/a"],
        );
        // In the middle it also matches zero segments.
        assert_matches(
            "/food/**/eggs",
            &["/food/eggs", "/food/a/eggs", "/food/a/b/eggs"],
            &["/food/eggs/x", "/food/aeggs"],
        );
        // `/**` matches every namespace.
        assert_matches("/**", &["/", "/a", "/a/b/c", "//"], &[]);
    }

    #[test]
    fn question_marks_and_classes_match_one_character_but_never_a_slash() {
        assert_matches("/f?od", &["/food", "/fxod", "/féod"], &["/fod", "/f/od"]);
        assert_matches("/[abc]x", &["/ax", "/cx"], &["/dx", "/x"]);
        assert_matches("/[a-c]", &["/b"], &["/d"]);
        assert_matches("/[!a]x", &["/bx"], &["/ax", "//x"]);
        assert_matches("/[/]x", &[], &["//x"]);
    }

    #[test]
    fn metacharacters_are_matched_literally_inside_brackets_and_backslash_is_literal() {
        assert_matches("/a[*]", &["/a*"], &["/ab"]);
        assert_matches("/a[?]", &["/a?"], &["/ab"]);
        assert_matches("/[]]", &["/]"], &["/a"]);
        // There is no escape character: `\` is an ordinary character.
        assert_matches("/a\\*", &["/a\\", "/a\\b"], &["/a*"]);
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert_matches("/Food", &["/Food"], &["/food", "/FOOD"]);
    }

    #[test]
    fn invalid_globs_are_refused_with_a_reason() {
        assert_eq!(NamespaceGlob::new(""), Err(GlobError::Empty));
        assert_eq!(
            NamespaceGlob::new("food"),
            Err(GlobError::MissingLeadingSlash)
        );
        assert_eq!(
            NamespaceGlob::new("**"),
            Err(GlobError::MissingLeadingSlash)
        );
        for (glob, position) in [
            ("/food**", 4),
            ("/a**b", 1),
            ("/**a", 3),
            ("/***", 3),
            ("/[", 1),
        ] {
            match NamespaceGlob::new(glob) {
                Err(GlobError::Syntax { position: at, .. }) => assert_eq!(at, position, "{glob}"),
                other => panic!("{glob}: expected a syntax error, got {other:?}"),
            }
        }
        let error = NamespaceGlob::new("/a**").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid glob near position 1: recursive wildcards must form a single path component"
        );
    }
}
