//! File names for the mirror of the tree: whatever a title holds (slashes,
//! `..`, control characters, reserved names, 500 characters), the name is one
//! harmless path component, and names in one directory never collide (also
//! not by case, for case-insensitive file systems).

use std::collections::HashSet;

/// Bytes a name may take (most file systems allow 255; room for a suffix).
const MAX_NAME_BYTES: usize = 180;

/// Windows device names, refused by Windows and by SMB shares on Linux too.
const RESERVED: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9",
    "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// One safe path component for `title` (never empty, `.` or `..`, no separator).
pub fn sanitize(title: &str) -> String {
    let mut s: String = title
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    s = s.trim().trim_start_matches('.').trim_end_matches(['.', ' ']).to_owned();
    if s.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    if s.is_empty() {
        s = "untitled".into();
    }
    let stem = s.split('.').next().unwrap_or("").to_ascii_lowercase();
    if RESERVED.contains(&stem.as_str()) {
        s.insert(0, '_');
    }
    s
}

/// Splits `name` into stem and extension (`"a.b.pdf"` → `("a.b", ".pdf")`).
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 8 => name.split_at(i),
        _ => (name, ""),
    }
}

/// The names taken in one directory.
#[derive(Debug, Default)]
pub struct DirNames {
    taken: HashSet<String>,
}

impl DirNames {
    /// Takes a free name for `title` + `ext` (`ext` like `.docx`, or empty),
    /// adding ` (token tail)` and then a counter when it is taken.
    pub fn take(&mut self, title: &str, ext: &str, token: &str) -> String {
        let base = sanitize(title);
        let (stem, own_ext) = split_ext(&base);
        let ext = if ext.is_empty() || own_ext.eq_ignore_ascii_case(ext) {
            own_ext.to_owned()
        } else {
            ext.to_owned()
        };
        let stem = if ext == own_ext { stem.to_owned() } else { base.clone() };
        let tail: String = token.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        let tail = sanitize(&tail);
        let candidates = std::iter::once(format!("{stem}{ext}"))
            .chain(std::iter::once(format!("{stem} ({tail}){ext}")))
            .chain((2..).map(|n| format!("{stem} ({tail}-{n}){ext}")));
        for c in candidates {
            if self.taken.insert(c.to_lowercase()) {
                return c;
            }
        }
        unreachable!("an endless sequence of candidates")
    }

    /// Marks `name` taken (a name reserved for a later fallback).
    pub fn reserve(&mut self, name: &str) -> bool {
        self.taken.insert(name.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_titles_become_one_harmless_component() {
        for t in [
            "../../etc/passwd",
            "a/b/c",
            "..",
            ".",
            "",
            "   ",
            "nul\u{0}byte",
            "tab\tand\nnew",
            "<>:\"|?*",
            "C:\\x",
        ] {
            let s = sanitize(t);
            assert!(!s.is_empty() && s != "." && s != "..", "{t:?} → {s:?}");
            assert!(
                !s.contains('/') && !s.contains('\\') && !s.chars().any(char::is_control),
                "{t:?} → {s:?}"
            );
            assert!(!s.starts_with('.'), "{t:?} → {s:?}");
        }
        assert_eq!(sanitize("CON"), "_CON");
        assert_eq!(sanitize("con.txt"), "_con.txt");
        assert_eq!(sanitize("Budget 3.pdf"), "Budget 3.pdf");
        let long = "長".repeat(300);
        let s = sanitize(&long);
        assert!(s.len() <= MAX_NAME_BYTES && s.starts_with('長'));
    }

    #[test]
    fn names_never_collide_even_by_case() {
        let mut d = DirNames::default();
        assert_eq!(d.take("Budget", ".docx", "doxcnAAAA11112222"), "Budget.docx");
        assert_eq!(d.take("budget", ".docx", "doxcnBBBB33334444"), "budget (33334444).docx");
        assert_eq!(d.take("Budget", ".docx", "doxcnCCCC33334444"), "Budget (33334444-2).docx");
        assert_eq!(d.take("Budget.pdf", "", "boxcn1"), "Budget.pdf");
        assert_eq!(d.take("Budget.pdf", "", "boxcn2"), "Budget (boxcn2).pdf");
        assert_eq!(d.take("Report.docx", ".docx", "x"), "Report.docx");
        assert_eq!(d.take("Q3 v1.2", ".xlsx", "y"), "Q3 v1.2.xlsx");
        assert_eq!(d.take("Reports", "", "fldcn1"), "Reports");
        assert_eq!(d.take("reports", "", "fldcn2"), "reports (fldcn2)");
    }
}
