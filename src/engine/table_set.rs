//! A set of table names: what a statement reads or writes, what a commit changed.

/// Table names (lowercase, as SQLite reports them for the schema), sorted and
/// without repeats. A sorted `Vec`, not a `BTreeSet`: a set holds a handful of
/// names, and every B-tree instantiation adds kilobytes to the wasm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSet(Vec<String>);

impl TableSet {
    pub fn new() -> Self {
        TableSet(Vec::new())
    }

    /// Adds `name`; returns whether it was new.
    pub fn insert(&mut self, name: String) -> bool {
        match self.0.binary_search(&name) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, name);
                true
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|t| t.as_str().cmp(name)).is_ok()
    }

    pub fn is_disjoint(&self, other: &TableSet) -> bool {
        !self.0.iter().any(|name| other.contains(name))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }
}

impl Extend<String> for TableSet {
    fn extend<I: IntoIterator<Item = String>>(&mut self, names: I) {
        for name in names {
            self.insert(name);
        }
    }
}

impl FromIterator<String> for TableSet {
    fn from_iter<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut set = TableSet::new();
        set.extend(names);
        set
    }
}

impl IntoIterator for TableSet {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a TableSet {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> TableSet {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_names_sorted_and_once() {
        let mut tables = set(&["todos", "lists", "todos"]);
        assert!(!tables.insert("lists".into()));
        assert!(tables.insert("a".into()));
        assert_eq!(tables.iter().collect::<Vec<_>>(), ["a", "lists", "todos"]);
        assert!(tables.contains("lists") && !tables.contains("list"));
    }

    #[test]
    fn disjoint_only_without_a_common_name() {
        assert!(set(&["a", "b"]).is_disjoint(&set(&["c"])));
        assert!(!set(&["a", "b"]).is_disjoint(&set(&["c", "b"])));
        assert!(TableSet::new().is_disjoint(&set(&["a"])));
    }
}
