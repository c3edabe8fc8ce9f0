//! Tool-name patterns: `*` matches any run of characters (none included), `?` exactly one;
//! every other character matches itself.

/// A pattern on tool names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Box<[char]>,
}

impl Glob {
    /// The pattern `text`.
    pub fn new(text: &str) -> Self {
        Self {
            pattern: text.chars().collect(),
        }
    }

    /// Whether `text` has a wildcard (`*` or `?`); a name without one is matched exactly.
    pub fn is_pattern(text: &str) -> bool {
        text.contains(['*', '?'])
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let pattern = &self.pattern;
        let (mut p, mut n) = (0, 0);
        // Where the last `*` was, and where in the name it began matching.
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(&c) if c == '?' || c == name[n] => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    Some((star_p, star_n)) => {
                        p = star_p + 1;
                        n = star_n + 1;
                        star = Some((star_p, star_n + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        let cases = [
            ("delete_*", "delete_file", true),
            ("delete_*", "delete_", true),
            ("delete_*", "undelete_file", false),
            ("*_file", "write_file", true),
            ("*_file", "write_files", false),
            ("*", "", true),
            ("*", "anything", true),
            ("write_?ile", "write_file", true),
            ("write_?ile", "write_ile", false),
            ("*dir*", "create_directory", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("ü*", "über", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(name),
                expected,
                "{pattern} ~ {name}"
            );
        }
    }
}
