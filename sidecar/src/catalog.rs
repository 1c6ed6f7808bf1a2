// SPDX-License-Identifier: Apache-2.0
//! The catalog of hot-function categories (crypto, tls, net, auth, file, exec) and the `--hot-functions`
//! patterns compiled against it. docs/catalog.md is the user-facing description of both.
//!
//! A category is a list of rules; a rule says "in objects whose file name or soname matches one of these globs,
//! functions whose name matches one of these globs belong to the category". A pattern selects functions:
//! `category/glob` (the category's functions whose name matches the glob), a plain symbol glob, or
//! `sym:<glob>` (a symbol glob that itself contains `/`).

mod builtin;
mod glob;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};

use glob::Glob;
pub use glob::glob_match;

/// Tag of a plain symbol glob that matches no catalog category.
pub const CUSTOM_TAG: &str = "custom";

/// Prefix of a symbol glob that contains `/` (a Go name outside the catalog's categories).
pub const SYMBOL_PREFIX: &str = "sym:";

/// Loading a catalog extension or compiling `--hot-functions` patterns failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog extension {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog extension {source_name} is not valid JSON: {source} (see docs/catalog.md)")]
    Parse {
        source_name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("catalog extension {source_name}: {field}: {problem} (see docs/catalog.md)")]
    Invalid {
        source_name: String,
        field: String,
        problem: String,
    },
    #[error(
        "--hot-functions {pattern:?}: unknown category {category:?}; known categories: {}; \
         write `sym:{pattern}` for a symbol glob that contains '/'",
        known.join(", ")
    )]
    UnknownCategory {
        pattern: String,
        category: String,
        known: Vec<String>,
    },
    #[error("--hot-functions {pattern:?}: {problem}")]
    InvalidPattern { pattern: String, problem: String },
}

/// One rule of a category. `libraries` are globs over an object's file name or soname (`*` = any object,
/// including statically linked and Go executables); `symbols` are globs over function names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    pub libraries: Vec<String>,
    pub symbols: Vec<String>,
}

/// A named category of hot functions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Category {
    pub name: String,
    pub description: String,
    pub rules: Vec<Rule>,
}

/// The categories known to one run: the built-in ones plus any extension files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    categories: Vec<Category>,
}

impl Catalog {
    /// The built-in catalog (docs/catalog.md).
    pub fn builtin() -> Self {
        let categories = builtin::BUILTIN
            .iter()
            .map(|(name, description, rules)| Category {
                name: (*name).to_owned(),
                description: (*description).to_owned(),
                rules: rules
                    .iter()
                    .map(|(libraries, symbols)| Rule {
                        libraries: libraries.iter().map(|s| (*s).to_owned()).collect(),
                        symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
                    })
                    .collect(),
            })
            .collect();
        Catalog { categories }
    }

    /// Extends the catalog from a JSON file
    /// `{"categories": {"<name>": {"description": "...", "rules": [{"libraries": [...], "symbols": [...]}]}}}`:
    /// rules of an existing category are appended (a description given for it replaces the old one), new
    /// categories are added. Nothing is changed when the file has any error.
    pub fn load_extension(&mut self, path: &Path) -> Result<(), CatalogError> {
        let bytes = std::fs::read(path).map_err(|source| CatalogError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.extend_from_slice(&bytes, &path.display().to_string())
    }

    /// [`Catalog::load_extension`] on bytes already read; `source_name` names them in errors.
    pub fn extend_from_slice(
        &mut self,
        bytes: &[u8],
        source_name: &str,
    ) -> Result<(), CatalogError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|source| CatalogError::Parse {
            source_name: source_name.to_owned(),
            source,
        })?;
        let existing: Vec<&str> = self.categories.iter().map(|c| c.name.as_str()).collect();
        let additions = parse_extension(&value, source_name, &existing)?;
        for (name, description, rules) in additions {
            if let Some(existing) = self.categories.iter_mut().find(|c| c.name == name) {
                if let Some(description) = description {
                    existing.description = description;
                }
                existing.rules.extend(rules);
            } else {
                // parse_extension guarantees a description for new categories.
                self.categories.push(Category {
                    name,
                    description: description.unwrap_or_default(),
                    rules,
                });
            }
        }
        Ok(())
    }

    /// All category names, sorted.
    pub fn category_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.categories.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// All categories, built-in first, then those added by extensions, in the order they were added.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// One category by name.
    pub fn category(&self, name: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.name == name)
    }

    /// Compiles `--hot-functions` patterns: `category/glob` (`crypto/*`, `tls/SSL_*`), a plain symbol glob
    /// (`SSL_read*`: no `/`), or `sym:<glob>` for a symbol glob that contains `/`. A `word/...` pattern whose
    /// word is not a category is an error listing the known ones. For `category/glob` the glob is matched
    /// against the symbol, and so is the whole pattern, so Go names such as `crypto/tls.(*Conn).Handshake`
    /// match `crypto/*` and `crypto/tls.*` directly (they are still only selected where the category's rules
    /// cover them).
    pub fn compile(&self, patterns: &[String]) -> Result<HotSelector, CatalogError> {
        let categories: Vec<CompiledCategory> =
            self.categories.iter().map(CompiledCategory::new).collect();
        let mut compiled = Vec::with_capacity(patterns.len());
        let mut requested: Vec<usize> = Vec::new();
        for pattern in patterns {
            let invalid = |problem: &str| CatalogError::InvalidPattern {
                pattern: pattern.clone(),
                problem: problem.to_owned(),
            };
            if pattern.trim().is_empty() {
                return Err(invalid("empty pattern"));
            }
            if let Some(glob) = pattern.strip_prefix(SYMBOL_PREFIX) {
                if glob.is_empty() {
                    return Err(invalid("`sym:` needs a symbol glob after it"));
                }
                compiled.push(Pattern::Symbol(Glob::new(glob)));
                continue;
            }
            let Some((word, glob)) = pattern.split_once('/') else {
                if categories.iter().any(|c| c.name == *pattern) {
                    tracing::warn!(
                        %pattern,
                        "--hot-functions {pattern} is a symbol glob (functions named {pattern:?}); \
                         write {pattern}/* for the category"
                    );
                }
                compiled.push(Pattern::Symbol(Glob::new(pattern)));
                continue;
            };
            let Some(index) = categories.iter().position(|c| c.name == word) else {
                return Err(CatalogError::UnknownCategory {
                    pattern: pattern.clone(),
                    category: word.to_owned(),
                    known: self
                        .category_names()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                });
            };
            if glob.is_empty() {
                return Err(invalid(
                    "no symbol glob after the category (write `category/*` for all of it)",
                ));
            }
            if !requested.contains(&index) {
                requested.push(index);
            }
            compiled.push(Pattern::Category {
                category: index,
                glob: Glob::new(glob),
                whole: Glob::new(pattern),
            });
        }
        requested.sort_by(|&a, &b| categories[a].name.cmp(&categories[b].name));
        let any_plain = compiled.iter().any(|p| matches!(p, Pattern::Symbol(_)));
        let needed = (0..categories.len())
            .map(|i| any_plain || requested.contains(&i))
            .collect();
        Ok(HotSelector {
            categories,
            patterns: compiled,
            requested,
            needed,
            cache: Mutex::new(HashMap::new()),
        })
    }
}

/// The catalog as `linkguard map catalog` prints it: categories sorted by name, each with its rules.
impl std::fmt::Display for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut categories: Vec<&Category> = self.categories.iter().collect();
        categories.sort_by(|a, b| a.name.cmp(&b.name));
        for category in categories {
            writeln!(f, "{}: {}", category.name, category.description)?;
            for rule in &category.rules {
                writeln!(f, "  libraries: {}", rule.libraries.join(" "))?;
                writeln!(f, "    symbols: {}", rule.symbols.join(" "))?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "Patterns: <category>/<glob> (e.g. crypto/*, tls/SSL_*), a symbol glob without '/', or sym:<glob>.\n\
             Libraries match by file name or soname; '*' in a glob matches any run of characters, '/' included."
        )
    }
}

/// One category of an extension file: name, description (optional for existing categories), rules.
type ExtensionCategory = (String, Option<String>, Vec<Rule>);

/// Validates an extension document field by field, so errors can name the field (serde's would only give a
/// line and column). Returns the categories in document order.
fn parse_extension(
    value: &Value,
    source_name: &str,
    existing: &[&str],
) -> Result<Vec<ExtensionCategory>, CatalogError> {
    let invalid = |field: &str, problem: &str| CatalogError::Invalid {
        source_name: source_name.to_owned(),
        field: field.to_owned(),
        problem: problem.to_owned(),
    };
    let root = value
        .as_object()
        .ok_or_else(|| invalid("(root)", "must be a JSON object"))?;
    check_keys(root, &["categories", "$schema"], "", &invalid)?;
    let categories = match root.get("categories") {
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(invalid(
                "categories",
                "must be an object of category name -> category",
            ));
        }
        None => return Err(invalid("categories", "is missing")),
    };
    let mut out = Vec::with_capacity(categories.len());
    for (name, category) in categories {
        let field = format!("categories.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(invalid(
                &field,
                "a category name is letters, digits, '_', '-' and '.' only",
            ));
        }
        if name == CUSTOM_TAG || name == "sym" {
            return Err(invalid(&field, &format!("{name:?} is reserved")));
        }
        let category = category
            .as_object()
            .ok_or_else(|| invalid(&field, "must be an object"))?;
        check_keys(category, &["description", "rules"], &field, &invalid)?;
        let description = match category.get("description") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(invalid(&format!("{field}.description"), "must be a string")),
            None => None,
        };
        // A new category needs a description; existing ones already have one.
        if description.is_none() && !existing.contains(&name.as_str()) {
            return Err(invalid(
                &format!("{field}.description"),
                "is missing (required for a new category)",
            ));
        }
        let rules_field = format!("{field}.rules");
        let rules = match category.get("rules") {
            Some(Value::Array(rules)) => rules,
            Some(_) => return Err(invalid(&rules_field, "must be an array of rules")),
            None => return Err(invalid(&rules_field, "is missing")),
        };
        if rules.is_empty() {
            return Err(invalid(&rules_field, "must have at least one rule"));
        }
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let rule_field = format!("{rules_field}[{i}]");
            let rule = rule
                .as_object()
                .ok_or_else(|| invalid(&rule_field, "must be an object"))?;
            check_keys(rule, &["libraries", "symbols"], &rule_field, &invalid)?;
            parsed.push(Rule {
                libraries: glob_list(
                    rule.get("libraries"),
                    &format!("{rule_field}.libraries"),
                    &invalid,
                )?,
                symbols: glob_list(
                    rule.get("symbols"),
                    &format!("{rule_field}.symbols"),
                    &invalid,
                )?,
            });
        }
        out.push((name.clone(), description, parsed));
    }
    Ok(out)
}

fn check_keys(
    map: &Map<String, Value>,
    allowed: &[&str],
    field: &str,
    invalid: &dyn Fn(&str, &str) -> CatalogError,
) -> Result<(), CatalogError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => {
            let path = if field.is_empty() {
                key.clone()
            } else {
                format!("{field}.{key}")
            };
            Err(invalid(
                &path,
                &format!("unknown field (expected one of: {})", allowed.join(", ")),
            ))
        }
        None => Ok(()),
    }
}

fn glob_list(
    value: Option<&Value>,
    field: &str,
    invalid: &dyn Fn(&str, &str) -> CatalogError,
) -> Result<Vec<String>, CatalogError> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid(field, "must be an array of glob strings")),
        None => return Err(invalid(field, "is missing")),
    };
    if items.is_empty() {
        return Err(invalid(field, "must have at least one glob"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::String(_) => Err(invalid(&format!("{field}[{i}]"), "is empty")),
            _ => Err(invalid(&format!("{field}[{i}]"), "must be a string")),
        })
        .collect()
}

#[derive(Debug)]
struct CompiledRule {
    libraries: Vec<Glob>,
    symbols: Vec<Glob>,
}

#[derive(Debug)]
struct CompiledCategory {
    name: String,
    rules: Vec<CompiledRule>,
}

impl CompiledCategory {
    fn new(category: &Category) -> Self {
        CompiledCategory {
            name: category.name.clone(),
            rules: category
                .rules
                .iter()
                .map(|r| CompiledRule {
                    libraries: r.libraries.iter().map(|g| Glob::new(g)).collect(),
                    symbols: r.symbols.iter().map(|g| Glob::new(g)).collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug)]
enum Pattern {
    /// `category/glob`: `whole` is the pattern itself, for Go names such as `crypto/tls.Dial`.
    Category {
        category: usize,
        glob: Glob,
        whole: Glob,
    },
    /// A plain symbol glob, or `sym:<glob>`.
    Symbol(Glob),
}

/// The symbol globs that apply to one object. Exact names (most of the libc rules) go into one map, so a
/// symbol costs one hash lookup plus the few wildcard globs, not a scan of every name of every category.
#[derive(Debug)]
struct ObjectRules {
    /// Exact symbol name -> categories listing it.
    exact: HashMap<String, Vec<usize>>,
    /// Per category (index = category index): the wildcard globs.
    globs: Vec<Vec<Glob>>,
    /// Per category: whether any rule applies to this object at all.
    applies: Vec<bool>,
}

impl ObjectRules {
    fn new(categories: &[CompiledCategory], file_name: &str, soname: Option<&str>) -> Self {
        let library_matches =
            |g: &Glob| g.matches(file_name) || soname.is_some_and(|s| g.matches(s));
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut globs = vec![Vec::new(); categories.len()];
        let mut applies = vec![false; categories.len()];
        for (index, category) in categories.iter().enumerate() {
            for rule in category
                .rules
                .iter()
                .filter(|r| r.libraries.iter().any(library_matches))
            {
                applies[index] = true;
                for glob in &rule.symbols {
                    match glob {
                        Glob::Exact(name) => {
                            let entry = exact.entry(name.clone()).or_default();
                            if !entry.contains(&index) {
                                entry.push(index);
                            }
                        }
                        other => globs[index].push(other.clone()),
                    }
                }
            }
        }
        ObjectRules {
            exact,
            globs,
            applies,
        }
    }

    /// Which categories (restricted to `wanted`) cover `symbol` in this object.
    fn covered(&self, symbol: &str, wanted: &[bool]) -> Vec<bool> {
        let mut out = vec![false; self.globs.len()];
        let bare = symbol
            .find('@')
            .filter(|&at| at > 0)
            .map(|at| &symbol[..at]);
        for name in std::iter::once(symbol).chain(bare) {
            for &index in self.exact.get(name).map(Vec::as_slice).unwrap_or_default() {
                out[index] = true;
            }
        }
        for (index, globs) in self.globs.iter().enumerate() {
            if !out[index] && wanted[index] {
                out[index] = globs.iter().any(|g| symbol_matches(g, symbol));
            }
        }
        out
    }
}

/// A versioned name as some tools print it (`memcpy@@GLIBC_2.14`) matches by its full text or by its bare name.
fn symbol_matches(glob: &Glob, symbol: &str) -> bool {
    if glob.matches(symbol) {
        return true;
    }
    match symbol.find('@') {
        Some(at) if at > 0 => glob.matches(&symbol[..at]),
        _ => false,
    }
}

type ObjectCache = HashMap<String, Vec<(Option<String>, Arc<ObjectRules>)>>;

/// Compiled `--hot-functions` patterns. Per-object rule lists are computed once per (file name, soname) and
/// cached, because [`HotSelector::tags_for`] runs for every symbol of every object of a closure.
#[derive(Debug)]
pub struct HotSelector {
    categories: Vec<CompiledCategory>,
    patterns: Vec<Pattern>,
    /// Indices of the categories named by `category/...` patterns, sorted by name.
    requested: Vec<usize>,
    /// Per category: whether any answer can depend on it (requested, or every category when a plain glob
    /// needs the covering categories for its tags).
    needed: Vec<bool>,
    cache: Mutex<ObjectCache>,
}

impl HotSelector {
    /// Tags of the patterns that select `symbol` defined in the object with file name `file_name` / soname
    /// `soname`: the category of a `category/glob` pattern; for a plain or `sym:` glob, every catalog category
    /// whose rules cover the symbol, or `custom` when none does. Empty = not hot. Sorted, unique.
    pub fn tags_for(&self, file_name: &str, soname: Option<&str>, symbol: &str) -> Vec<String> {
        let object = self.object_rules(file_name, soname);
        // Computed at most once, and only when some pattern's glob matches.
        let mut covered: Option<Vec<bool>> = None;
        let mut tags: Vec<&str> = Vec::new();
        for pattern in &self.patterns {
            match pattern {
                Pattern::Category {
                    category,
                    glob,
                    whole,
                } => {
                    if (symbol_matches(glob, symbol) || whole.matches(symbol))
                        && covered.get_or_insert_with(|| object.covered(symbol, &self.needed))
                            [*category]
                    {
                        tags.push(&self.categories[*category].name);
                    }
                }
                Pattern::Symbol(glob) => {
                    if symbol_matches(glob, symbol) {
                        let covered =
                            covered.get_or_insert_with(|| object.covered(symbol, &self.needed));
                        let before = tags.len();
                        for (index, category) in self.categories.iter().enumerate() {
                            if covered[index] {
                                tags.push(&category.name);
                            }
                        }
                        if tags.len() == before {
                            tags.push(CUSTOM_TAG);
                        }
                    }
                }
            }
        }
        sorted_unique(tags)
    }

    /// For watch scopes: the requested categories (those named by `category/...` patterns) whose rules cover
    /// `symbol` of that object at all, whatever the pattern's own glob. Sorted, unique.
    pub fn watch_tags_for(
        &self,
        file_name: &str,
        soname: Option<&str>,
        symbol: &str,
    ) -> Vec<String> {
        if self.requested.is_empty() {
            return Vec::new();
        }
        let object = self.object_rules(file_name, soname);
        if !self.requested.iter().any(|&i| object.applies[i]) {
            return Vec::new();
        }
        let covered = object.covered(symbol, &self.needed);
        let tags = self
            .requested
            .iter()
            .filter(|&&i| covered[i])
            .map(|&i| self.categories[i].name.as_str())
            .collect();
        sorted_unique(tags)
    }

    /// The requested category names (from `category/...` patterns), sorted.
    pub fn categories(&self) -> Vec<&str> {
        self.requested
            .iter()
            .map(|&i| self.categories[i].name.as_str())
            .collect()
    }

    /// Whether any pattern could select a symbol in an object with this name: lets a caller skip objects
    /// (and their thousands of symbols) that no rule or plain glob can touch.
    pub fn may_select_in(&self, file_name: &str, soname: Option<&str>) -> bool {
        let object = self.object_rules(file_name, soname);
        self.patterns.iter().any(|p| match p {
            Pattern::Symbol(_) => true,
            Pattern::Category { category, .. } => object.applies[*category],
        })
    }

    fn object_rules(&self, file_name: &str, soname: Option<&str>) -> Arc<ObjectRules> {
        // A poisoned lock only means another thread panicked while inserting; the map is still usable.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entries) = cache.get(file_name)
            && let Some((_, rules)) = entries.iter().find(|(s, _)| s.as_deref() == soname)
        {
            return Arc::clone(rules);
        }
        let rules = Arc::new(ObjectRules::new(&self.categories, file_name, soname));
        cache
            .entry(file_name.to_owned())
            .or_default()
            .push((soname.map(str::to_owned), Arc::clone(&rules)));
        rules
    }
}

fn sorted_unique(mut tags: Vec<&str>) -> Vec<String> {
    tags.sort_unstable();
    tags.dedup();
    tags.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests;
