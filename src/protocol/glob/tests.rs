//! The glob rules, pinned piece by piece; the cost bound, checked by counting the matcher's
//! word operations on the worst patterns; and the new matcher compared with the `glob` crate
//! (the backtracking matcher flo used before) on random short globs and namespaces.

use super::*;
use crate::random::SeededRng as Rng;

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

#[test]
fn a_double_star_segment_absorbs_the_slash_after_it_and_repeats_collapse() {
    // `/a/**/` is `/a/**`, and `/**/**/b` is `/**/b`.
    assert_matches("/a/**/", &["/a/", "/a/b", "/a/b/c"], &["/a", "/b/"]);
    assert_matches("/**/**/b", &["/b", "/x/b", "/x/y/b"], &["/xb", "/b/x"]);
    // A `*` after `**` still stays within the last segment.
    assert_matches("/a/**/*", &["/a/", "/a/x", "/a/x/y"], &["/a", "/b/x"]);
}

#[test]
fn ranges_that_span_a_slash_never_match_it_and_non_ascii_characters_are_single_characters() {
    // `+` .. `0` includes `/` (0x2f), which a set never matches.
    assert_matches("/[+-0]", &["/+", "/.", "/0"], &["//"]);
    assert_matches("/[!a]", &["/é", "/b"], &["/a", "//"]);
    assert_matches("/[à-é]?", &["/éx", "/àé"], &["/ax", "/é/"]);
    assert_matches("/é*ü/**", &["/éxü/", "/éü/a/b"], &["/éü", "/e/ü/"]);
}

#[test]
fn braces_reversed_ranges_and_slashes_in_sets_are_refused_where_they_are() {
    for (glob, position) in [
        ("/{a,b}", 1),
        ("/a}", 2),
        ("/[z-a]", 2),
        ("/x[ab-c9-0]", 7),
        ("/[/]x", 2),
        ("/[!/]", 3),
        ("/[a-/]", 2),
        ("/[!]", 1),
        ("/a[b", 2),
    ] {
        match NamespaceGlob::new(glob) {
            Err(GlobError::Syntax { position: at, .. }) => assert_eq!(at, position, "{glob}"),
            other => panic!("{glob}: expected a syntax error, got {other:?}"),
        }
    }
    // Braces and slashes are matched literally in brackets.
    assert_matches("/[{]a,b[}]", &["/{a,b}"], &["/a", "/{a,b"]);
    let error = NamespaceGlob::new("/[z-a]").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid glob near position 2: reversed range in `[...]`, write `[a-z]`"
    );
}

#[test]
fn a_glob_longer_than_the_limit_is_refused_before_it_is_compiled() {
    let glob = format!("/{}", "a".repeat(1024));
    assert_eq!(
        NamespaceGlob::with_length_max(&glob, 1024),
        Err(GlobError::TooLong {
            length: 1025,
            length_max: 1024
        })
    );
    assert!(NamespaceGlob::with_length_max(&glob[..1024], 1024).is_ok());
    assert_eq!(
        GlobError::TooLong {
            length: 1025,
            length_max: 1024
        }
        .to_string(),
        "glob is 1025 bytes long, the limit is 1024 bytes"
    );
}

/// Runs `glob` against `namespace`, returning the result and the word operations it took.
fn counted(glob: &NamespaceGlob, namespace: &str) -> (bool, u64) {
    let before = steps_taken();
    let matched = glob.matches(namespace);
    (matched, steps_taken() - before)
}

/// A glob without wildcards is matched by comparing bytes, with no automaton step (a catch-up
/// read of one namespace matches every record it looks at), and answers as the automaton does.
#[test]
fn a_glob_without_wildcards_is_compared_without_running_the_automaton() {
    let glob = NamespaceGlob::new("/bench/42_é").expect("valid glob");
    for (namespace, expected) in [
        ("/bench/42_é", true),
        ("/bench/42_e", false),
        ("/bench/42_é/", false),
        ("/bench", false),
    ] {
        assert_eq!(counted(&glob, namespace), (expected, 0), "{namespace}");
    }
}

/// The patterns that made the backtracking matcher exponential, against long namespaces
/// built to make every attempt fail late, in ASCII and in non-ASCII characters: each match
/// costs at most a few word operations per namespace byte and 64 glob pieces, whatever the
/// characters (non-ASCII ones once cost a pass over every piece of the glob).
#[test]
fn the_worst_patterns_cost_a_bounded_number_of_steps() {
    let run = |length: usize, last: &str| format!("/{}/{last}", "a".repeat(length));
    let accented = |length: usize, last: &str| format!("/{}/{last}", "é".repeat(length));
    // The attack on the catch-up path: a 1024-byte glob that stays alive to the end.
    let alive = format!("/**/[!a{}]z", "b".repeat(1015));
    let cases = [
        // The 17-byte glob and 83-byte namespace of the report (46 s before).
        ("/*a*a*a*a*a*a*a*b".to_string(), run(80, "x")),
        (format!("/{}b", "*a".repeat(40)), run(1000, "x")),
        (format!("/**/{}", "*a".repeat(40)), run(1000, "b")),
        (format!("/{}*/x", "*a?".repeat(40)), run(1000, "y")),
        (format!("/**/{}/**/b", "*a".repeat(300)), "/a".repeat(512)),
        (
            format!("/{}", "*[!b]".repeat(200)),
            format!("/{}", "é".repeat(511)),
        ),
        (alive.clone(), format!("/{}", "é".repeat(511))),
        (alive, run(1021, "")),
        (format!("/**/{}", "*é".repeat(300)), accented(500, "b")),
        (format!("/**/{}", "?[!é]".repeat(200)), accented(500, "é")),
        (format!("/{}", "[éèê]*".repeat(200)), accented(500, "x")),
    ];
    for (glob, namespace) in cases {
        let compiled = NamespaceGlob::new(&glob).expect("valid glob");
        let (_, steps) = counted(&compiled, &namespace);
        let bytes = namespace.len() as u64;
        let words = (compiled.tokens.len() as u64 + 1).div_ceil(64);
        // Per character: one pass over the words, at most four closure passes, and for a
        // non-ASCII character its mask (a copy of the words, a binary search among at most
        // 1024 literals, at most one entry per word): the same bound for every character.
        let budget = (bytes + 1) * (7 * words + 11);
        assert!(
            steps <= budget,
            "{}...: {steps} steps for {bytes} bytes, over the budget {budget}",
            &glob[..20]
        );
        // What the engine charges for a match is never less than what it costs.
        assert!(steps <= compiled.match_cost(&namespace), "{}", &glob[..20]);
    }
    // The report's case is a small fraction of a millisecond's work.
    let compiled = NamespaceGlob::new("/*a*a*a*a*a*a*a*b").expect("valid glob");
    let namespace = run(80, "x");
    assert_eq!(namespace.len(), 83);
    let (matched, steps) = counted(&compiled, &namespace);
    assert!(!matched);
    assert!(steps <= 83 * 5, "{steps} steps");
}

/// Bracket expressions with non-ASCII ranges cost one binary search each per non-ASCII
/// character, never a scan of their items; a glob of 1024 bytes holds at most 146 of them.
#[test]
fn non_ascii_ranges_cost_a_binary_search_per_bracket_expression() {
    let sets = "[à-ÿ]".repeat(146);
    assert_eq!(sets.len(), 146 * 7);
    let glob = format!("/{sets}");
    let compiled = NamespaceGlob::new(&glob).expect("valid glob");
    let namespace = format!("/{}", "é".repeat(146));
    let (matched, steps) = counted(&compiled, &namespace);
    assert!(matched);
    assert!(steps <= compiled.match_cost(&namespace), "{steps} steps");
    assert!(compiled.match_cost(&namespace) <= 294 * (7 * 3 + 1 + 146));
    // Many ranges in one set: one binary search.
    let ranges: String = (0..200)
        .map(|i| {
            let low = char::from_u32(0x4e00 + 4 * i).expect("a CJK character");
            let high = char::from_u32(0x4e00 + 4 * i + 1).expect("a CJK character");
            format!("{low}-{high}")
        })
        .collect();
    let compiled = NamespaceGlob::new(&format!("/[{ranges}]*")).expect("valid glob");
    let inside = char::from_u32(0x4e00 + 4 * 199 + 1).expect("a CJK character");
    let outside = char::from_u32(0x4e00 + 4 * 199 + 2).expect("a CJK character");
    assert!(compiled.matches(&format!("/{inside}x")));
    assert!(!compiled.matches(&format!("/{outside}x")));
    let namespace = format!("/{}", inside.to_string().repeat(300));
    let (_, steps) = counted(&compiled, &namespace);
    assert!(steps <= 901 * (7 + 1 + 9), "{steps} steps");
}

#[test]
fn non_ascii_characters_follow_literals_singles_ranges_and_negations() {
    assert_matches("/é", &["/é"], &["/è", "/e", "/éé"]);
    assert_matches("/[éè]x", &["/éx", "/èx"], &["/êx", "/ex"]);
    assert_matches("/[!éè]x", &["/êx", "/ex"], &["/éx", "/èx", "//x"]);
    assert_matches("/[a-é]", &["/b", "/à", "/è", "/é"], &["/ê", "/A"]);
    assert_matches("/[!a-é]", &["/ê", "/A"], &["/b", "/à", "/è", "/é"]);
    // Overlapping and touching ranges are merged; literals repeat across words.
    assert_matches("/[à-äã-éê-ë]", &["/à", "/é", "/ë"], &["/ì", "/ß"]);
    let long = format!("/{}", "é".repeat(100));
    assert_matches(&long, &[&long], &[&long[..long.len() - 2]]);
}

/// Matches `pattern` with the `glob` crate as flo did before: `*` and `?` never match `/`.
fn reference_matches(pattern: &glob::Pattern, namespace: &str) -> bool {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    pattern.matches_with(namespace, options)
}

/// A short random glob over a small alphabet, so that matches are frequent.
fn random_glob(rng: &mut Rng) -> String {
    const PIECES: [&str; 20] = [
        "a",
        "b",
        "/",
        "/",
        "*",
        "**",
        "?",
        "[ab]",
        "[!a]",
        "[a-b]",
        "[]a]",
        ".",
        "é",
        "-",
        "[",
        "]",
        "[à-é]",
        "[!éa]",
        "[b-è]",
        "[!à-èé]",
    ];
    let mut glob = String::from("/");
    for _ in 0..rng.below(8) {
        glob.push_str(PIECES[rng.index(PIECES.len())]);
    }
    glob
}

fn random_namespace(rng: &mut Rng) -> String {
    const CHARS: [char; 9] = ['a', 'b', '/', '/', '.', 'é', ']', 'è', 'à'];
    let mut namespace = String::from("/");
    for _ in 0..rng.below(10) {
        namespace.push(CHARS[rng.index(CHARS.len())]);
    }
    namespace
}

/// Every glob the new matcher accepts, the `glob` crate accepts too, and both give the same
/// answer on every namespace; a glob the new parser refuses is one of the documented refusals.
#[test]
fn the_automaton_agrees_with_the_backtracking_matcher_on_random_globs() {
    let seed = 0x61_0B5;
    let mut rng = Rng::new(seed);
    let (mut compared, mut matched) = (0, 0);
    for _ in 0..20_000 {
        let glob = random_glob(&mut rng);
        let reference = glob::Pattern::new(&glob);
        let compiled = match NamespaceGlob::new(&glob) {
            Ok(compiled) => compiled,
            Err(GlobError::Syntax { message, .. }) => {
                let documented = reference.is_err()
                    || message.contains("reversed range")
                    || message.contains("`/` inside");
                assert!(documented, "seed {seed}: {glob:?} refused: {message}");
                continue;
            }
            Err(other) => panic!("seed {seed}: {glob:?}: {other}"),
        };
        let reference = reference.unwrap_or_else(|error| {
            panic!("seed {seed}: {glob:?} accepted but the glob crate says {error}")
        });
        for _ in 0..20 {
            let namespace = random_namespace(&mut rng);
            let expected = reference_matches(&reference, &namespace);
            assert_eq!(
                compiled.matches(&namespace),
                expected,
                "seed {seed}: glob {glob:?} on namespace {namespace:?}"
            );
            compared += 1;
            matched += usize::from(expected);
        }
    }
    eprintln!("{compared} comparisons, {matched} matches");
    assert!(compared > 100_000, "only {compared} comparisons");
    assert!(
        matched > 5_000,
        "only {matched} of {compared} comparisons matched"
    );
}

/// A namespace never holds a control character (Unicode Cc), so a glob with one, even inside
/// brackets, could only ever match nothing: it is refused instead (protocol.md section 8).
#[test]
fn a_glob_with_a_control_character_is_refused() {
    for (glob, position) in [
        ("/a\0b", 2),
        ("/a\nb", 2),
        ("/\u{7f}", 1),
        ("/x/\u{85}*", 3),
        ("/[a\tb]", 3),
        ("/[!\u{1f}]", 3),
    ] {
        match NamespaceGlob::new(glob) {
            Err(GlobError::Syntax { position: at, .. }) => assert_eq!(at, position, "{glob:?}"),
            other => panic!("{glob:?}: expected a syntax error, got {other:?}"),
        }
    }
}
