//! The auth file (`flo --auth-file FILE`): named principals, each with a hashed token and the
//! namespaces it may produce to and consume from. Parsed and validated once, at start-up, into
//! an [`AuthTable`] that the engine consults at Hello, Produce, Subscribe and StatusRequest
//! (docs/security.md describes the file for operators).
//!
//! ```toml
//! [principals.orders]
//! token = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! produce = ["/orders/**"]
//! consume = ["/orders/**", "/payments/created"]
//! admin = false
//! ```
//!
//! Tokens are stored as SHA-256 hashes. A plain hash (no salt, no slow key derivation) is
//! enough because the tokens are not passwords: `flo gen-token` makes them from 256 random
//! bits and `flo hash-token` refuses one shorter than [`TOKEN_LENGTH_MIN`] bytes, so guessing a
//! token or inverting its hash is out of reach however fast the hash is. A slow hash (argon2)
//! would only make every handshake cost milliseconds of the reactor thread.

use std::fmt;
use std::sync::Arc;

use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// The shortest token `flo hash-token` accepts, in bytes: with the 64 hex characters of
/// `flo gen-token` it is 256 bits; a human-chosen 32-byte phrase is still far beyond online
/// guessing at the handshake rate limit.
pub const TOKEN_LENGTH_MIN: usize = 32;
/// The most principals an auth file may name (the Hello check compares the token's hash with
/// every one of them, in constant time).
pub const PRINCIPALS_MAX: usize = 4096;
/// The most permissions one principal may list for produce, and again for consume.
pub const PERMISSIONS_MAX: usize = 256;
/// The largest auth file read, in bytes.
pub const AUTH_FILE_SIZE_MAX: u64 = 4 * 1024 * 1024;

const HASH_PREFIX: &str = "sha256:";

/// One namespace permission: an exact namespace, or every namespace under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// `/orders/created`: this namespace only.
    Exact(String),
    /// `/orders/**`: every namespace that starts with `/orders/` (kept with its trailing
    /// `/`); `/**` is every namespace.
    Prefix(String),
}

/// The characters that make a glob more than a literal (`[` and `]` for bracket expressions,
/// `{`, `}`, `!` and `\` refused as well, to stay on the safe side of any later syntax).
fn is_glob_special(c: char) -> bool {
    matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '!' | '\\')
}

impl Permission {
    /// Parses `/a/b` or `/a/**`; anything else (other glob syntax) is refused, so that
    /// whether a subscription's glob stays inside a permission is a simple prefix check.
    pub fn parse(text: &str) -> Result<Permission, String> {
        if !text.starts_with('/') {
            return Err(format!("permission {text:?} must start with '/'"));
        }
        let (literal, prefix) = match text.strip_suffix("**") {
            Some(head) if head.ends_with('/') => (head, true),
            _ => (text, false),
        };
        if literal
            .chars()
            .any(|c| is_glob_special(c) || c.is_control())
        {
            return Err(format!(
                "permission {text:?} must be a namespace or a namespace prefix ending in /** \
                 (no other glob syntax)"
            ));
        }
        Ok(if prefix {
            Permission::Prefix(literal.to_string())
        } else {
            Permission::Exact(literal.to_string())
        })
    }

    /// True when `namespace` is inside this permission.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        match self {
            Permission::Exact(exact) => namespace == exact,
            Permission::Prefix(prefix) => namespace.starts_with(prefix.as_str()),
        }
    }

    /// True when every namespace `glob` can match is inside this permission. Conservative: a
    /// glob is inside a prefix when the prefix is a literal start of the glob (so every match
    /// starts with it), and inside an exact namespace when it is that namespace with no glob
    /// syntax. A glob wider than the permission, or too clever to tell, is not.
    pub fn covers_glob(&self, glob: &str) -> bool {
        match self {
            Permission::Exact(exact) => glob == exact && !glob.chars().any(is_glob_special),
            Permission::Prefix(prefix) => glob
                .strip_prefix(prefix.as_str())
                .is_some_and(|_| !prefix.chars().any(is_glob_special)),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::Exact(exact) => f.write_str(exact),
            Permission::Prefix(prefix) => write!(f, "{prefix}**"),
        }
    }
}

/// One named holder of a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// The name in the file, for logs.
    pub name: String,
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
    /// Namespaces it may produce to.
    pub produce: Vec<Permission>,
    /// Namespaces it may subscribe to.
    pub consume: Vec<Permission>,
    /// May ask for the server's status.
    pub admin: bool,
}

impl fmt::Debug for Principal {
    /// Leaves the hash out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field("produce", &self.produce)
            .field("consume", &self.consume)
            .field("admin", &self.admin)
            .finish()
    }
}

impl Principal {
    /// True when the principal may produce to `namespace`.
    pub fn may_produce(&self, namespace: &str) -> bool {
        self.produce.iter().any(|p| p.allows_namespace(namespace))
    }

    /// True when every namespace `glob` matches is one the principal may consume.
    pub fn may_consume(&self, glob: &str) -> bool {
        self.consume.iter().any(|p| p.covers_glob(glob))
    }
}

/// Every principal of an auth file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthTable {
    principals: Vec<Arc<Principal>>,
}

impl AuthTable {
    /// The principals, in the file's order.
    pub fn principals(&self) -> &[Arc<Principal>] {
        &self.principals
    }

    /// The principal whose token this is. Compares the token's hash with every principal's
    /// in constant time and without stopping at a match, so the time taken says nothing
    /// about which principal matched or how much of a hash was right.
    pub fn authenticate(&self, token: &[u8]) -> Option<Arc<Principal>> {
        let hash = digest(&SHA256, token);
        let mut found = None;
        for principal in &self.principals {
            let equal: bool = principal.token_hash.ct_eq(hash.as_ref()).into();
            if equal && found.is_none() {
                found = Some(Arc::clone(principal));
            }
        }
        found
    }

    /// Parses and validates an auth file's text.
    pub fn parse(text: &str) -> Result<AuthTable, String> {
        let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
            let first = error.to_string().lines().next().unwrap_or("").to_string();
            format!(
                "{first} (the auth file is TOML: a [principals.NAME] table a principal, with \
                 token = \"sha256:...\", produce = [...] and consume = [...]; docs/security.md)"
            )
        })?;
        for key in table.keys() {
            if key != "principals" {
                return Err(format!(
                    "unknown key {key:?} (only [principals.NAME] tables)"
                ));
            }
        }
        let Some(principals) = table.get("principals") else {
            return Err("no [principals.NAME] table: the file would let nobody in".into());
        };
        let principals = principals
            .as_table()
            .ok_or("principals must be a table of [principals.NAME] tables")?;
        if principals.len() > PRINCIPALS_MAX {
            return Err(format!("at most {PRINCIPALS_MAX} principals"));
        }
        let mut parsed: Vec<Arc<Principal>> = Vec::with_capacity(principals.len());
        for (name, value) in principals {
            let principal = parse_principal(name, value).map_err(|e| format!("{name}: {e}"))?;
            if let Some(other) = parsed.iter().find(|p| p.token_hash == principal.token_hash) {
                return Err(format!("{name}: same token as {}", other.name));
            }
            parsed.push(Arc::new(principal));
        }
        Ok(AuthTable { principals: parsed })
    }
}

fn parse_principal(name: &str, value: &toml::Value) -> Result<Principal, String> {
    let table = value.as_table().ok_or("must be a table")?;
    for key in table.keys() {
        if !matches!(key.as_str(), "token" | "produce" | "consume" | "admin") {
            return Err(format!(
                "unknown key {key:?} (token, produce, consume, admin)"
            ));
        }
    }
    let token = table
        .get("token")
        .and_then(toml::Value::as_str)
        .ok_or("token = \"sha256:...\" is missing (make one with `flo gen-token`)")?;
    let token_hash = parse_hash(token)?;
    let permissions = |key: &str| -> Result<Vec<Permission>, String> {
        let Some(value) = table.get(key) else {
            return Ok(Vec::new());
        };
        let list = value
            .as_array()
            .ok_or_else(|| format!("{key} must be a list of namespaces"))?;
        if list.len() > PERMISSIONS_MAX {
            return Err(format!("{key}: at most {PERMISSIONS_MAX} entries"));
        }
        list.iter()
            .map(|item| {
                let text = item
                    .as_str()
                    .ok_or_else(|| format!("{key}: every entry must be a string"))?;
                Permission::parse(text).map_err(|error| format!("{key}: {error}"))
            })
            .collect()
    };
    let admin = match table.get("admin") {
        None => false,
        Some(value) => value.as_bool().ok_or("admin must be true or false")?,
    };
    Ok(Principal {
        name: name.to_string(),
        token_hash,
        produce: permissions("produce")?,
        consume: permissions("consume")?,
        admin,
    })
}

fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let hex = text
        .strip_prefix(HASH_PREFIX)
        .ok_or("token must be \"sha256:\" and 64 hex digits, as `flo hash-token` prints")?;
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err("token must be \"sha256:\" and 64 hex digits".into());
    }
    let mut hash = [0u8; 32];
    for (index, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| {
            (b as char)
                .to_digit(16)
                .ok_or("token hash has a non-hex digit")
        };
        hash[index] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(hash)
}

/// The line an auth file stores for `token`: `sha256:` and 64 lowercase hex digits.
pub fn hash_token(token: &[u8]) -> String {
    let hash = digest(&SHA256, token);
    let mut text = String::from(HASH_PREFIX);
    for byte in hash.as_ref() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// A new token: 32 bytes from the operating system's random source, as 64 hex digits.
pub fn generate_token() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random source failed".to_string())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(produce: &str, consume: &str) -> AuthTable {
        let text = format!(
            "[principals.app]\ntoken = \"{}\"\nproduce = {produce}\nconsume = {consume}\n",
            hash_token(b"app-token")
        );
        AuthTable::parse(&text).expect("valid file")
    }

    /// A new user's first try (session 18) was one line a principal, `name token perms`: the
    /// error said only "TOML parse error at line 1, column 7".
    #[test]
    fn a_file_that_is_not_toml_is_told_the_expected_format() {
        let error = AuthTable::parse("alice 3ae74431 produce=/**\n").expect_err("not TOML");
        assert!(error.starts_with("TOML parse error at line 1"), "{error}");
        assert!(error.contains("[principals.NAME]"), "{error}");
        assert!(error.contains("docs/security.md"), "{error}");
    }

    #[test]
    fn authenticates_only_the_right_token() {
        let auth = table("[]", "[]");
        assert_eq!(auth.authenticate(b"app-token").unwrap().name, "app");
        assert!(auth.authenticate(b"app-tokem").is_none());
        assert!(auth.authenticate(b"").is_none());
    }

    #[test]
    fn produce_permissions_are_exact_or_prefix() {
        let auth = table(r#"["/orders/**", "/audit"]"#, "[]");
        let app = auth.authenticate(b"app-token").unwrap();
        assert!(app.may_produce("/orders/created"));
        assert!(app.may_produce("/orders/a/b"));
        assert!(app.may_produce("/audit"));
        assert!(!app.may_produce("/orders"), "the prefix keeps its slash");
        assert!(!app.may_produce("/ordersx/a"));
        assert!(!app.may_produce("/audit/x"));
    }

    #[test]
    fn a_glob_wider_than_the_permission_is_not_covered() {
        let auth = table("[]", r#"["/orders/**", "/audit"]"#);
        let app = auth.authenticate(b"app-token").unwrap();
        for inside in [
            "/orders/**",
            "/orders/*",
            "/orders/x/**",
            "/orders/[ab]",
            "/audit",
        ] {
            assert!(app.may_consume(inside), "{inside} is inside");
        }
        for wider in [
            "/**",
            "/order*/**",
            "/orders",
            "/*/created",
            "/audit*",
            "/aud?t",
            "/[ao]*/**",
        ] {
            assert!(!app.may_consume(wider), "{wider} is wider");
        }
        let all = table("[]", r#"["/**"]"#);
        assert!(all.authenticate(b"app-token").unwrap().may_consume("/**"));
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let hash = hash_token(b"x");
        let cases = [
            ("", "no [principals"),
            ("[principals.a]\nproduce = []\n", "token"),
            ("[principals.a]\ntoken = \"abc\"\n", "sha256"),
            (
                &format!("[principals.a]\ntoken = \"{hash}\"\nproduce = [\"/a/*\"]\n") as &str,
                "glob syntax",
            ),
            (
                &format!("[principals.a]\ntoken = \"{hash}\"\nextra = 1\n"),
                "unknown key",
            ),
            (
                &format!(
                    "[principals.a]\ntoken = \"{hash}\"\n[principals.b]\ntoken = \"{hash}\"\n"
                ),
                "same token",
            ),
            ("[principal.a]\n", "unknown key"),
        ];
        for (text, expected) in cases {
            let error = AuthTable::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.len() >= TOKEN_LENGTH_MIN);
        assert_ne!(a, b);
        assert_eq!(hash_token(a.as_bytes()).len(), 7 + 64);
    }
}
