//! From the policy file to the compiled tables: datasets loaded and recognised, zones turned
//! into address and name facts with their zone bitmasks, rules and selectors compiled, and
//! every error placed at its file, line and column.
mod rules;
mod warnings;
mod zones;

use warnings::fall_through_warnings;

use crate::policy::*;

impl Policy {
    /// Reads and compiles the policy at `path`, with the datasets it names and those in
    /// `datasets_dir`.
    pub fn load(path: &Path, datasets_dir: Option<&Path>) -> Result<Policy, PolicyErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PolicyErrors(vec![PolicyError {
                file: path.to_path_buf(),
                place: None,
                message: format!("cannot read the policy: {e}"),
            }])
        })?;
        Self::compile(&text, path, datasets_dir)
    }

    /// Compiles policy `text` (read from `path`, which places errors and anchors relative
    /// dataset paths).
    pub fn compile(
        text: &str,
        path: &Path,
        datasets_dir: Option<&Path>,
    ) -> Result<Policy, PolicyErrors> {
        compile(text, path, datasets_dir)
    }
}

/// Compiles policy `text` (read from `path`, which places errors and anchors relative dataset
/// paths) with the datasets it names and those in `datasets_dir`.
fn compile(text: &str, path: &Path, datasets_dir: Option<&Path>) -> Result<Policy, PolicyErrors> {
    let mut c = Compiler::new(text, path);
    let parsed: PolicyFile = match toml::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            let place = e.span().map(|s| c.place(s.start));
            return Err(PolicyErrors(vec![PolicyError {
                file: path.to_path_buf(),
                place,
                message: e.message().trim().to_string(),
            }]));
        }
    };
    c.datasets(&parsed, datasets_dir);
    c.zones(&parsed);
    let rules = c.rules(&parsed);
    if !c.errors.is_empty() {
        return Err(PolicyErrors(c.errors));
    }
    Ok(c.finish(parsed, rules, text))
}

struct Compiler<'a> {
    text: &'a str,
    path: &'a Path,
    errors: Vec<PolicyError>,
    loaded: Vec<Loaded>,
    /// Facts, their zones, and the address prefixes of facts.
    facts: Vec<Fact>,
    fact_zones: Vec<u128>,
    prefixes: PrefixSetsBuilder,
    /// First fact id of each loaded dataset's entries.
    dataset_base: Vec<u32>,
    zones: Vec<Zone>,
    zone_index: HashMap<String, usize>,
    names_exact: HashMap<String, Vec<u32>>,
    names_suffix: HashMap<String, Vec<u32>>,
    catalogue_used: bool,
    trust_cnames: u128,
}

impl<'a> Compiler<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        Self {
            text,
            path,
            errors: Vec::new(),
            loaded: Vec::new(),
            facts: Vec::new(),
            fact_zones: Vec::new(),
            prefixes: PrefixSetsBuilder::new(),
            dataset_base: Vec::new(),
            zones: Vec::new(),
            zone_index: HashMap::new(),
            names_exact: HashMap::new(),
            names_suffix: HashMap::new(),
            catalogue_used: false,
            trust_cnames: 0,
        }
    }

    /// 1-based (line, column) of a byte offset.
    fn place(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    fn error_at<T>(&mut self, at: &Spanned<T>, message: String) {
        let place = Some(self.place(at.span().start));
        self.errors.push(PolicyError {
            file: self.path.to_path_buf(),
            place,
            message,
        });
    }

    fn error(&mut self, message: String) {
        self.errors.push(PolicyError {
            file: self.path.to_path_buf(),
            place: None,
            message,
        });
    }

    fn datasets(&mut self, parsed: &PolicyFile, dir: Option<&Path>) {
        let mut by_kind: HashMap<DatasetKind, Loaded> = HashMap::new();
        if let Some(dir) = dir {
            match datasets::load_dir(dir) {
                Ok(all) => {
                    for l in all {
                        if let Some(other) = by_kind.get(&l.info.kind) {
                            self.error(format!(
                                "--datasets {}: two {} datasets: {} and {}",
                                dir.display(),
                                l.info.kind.label(),
                                other.info.path.display(),
                                l.info.path.display()
                            ));
                            continue;
                        }
                        by_kind.insert(l.info.kind, l);
                    }
                }
                Err(e) => self.error(e.to_string()),
            }
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        let d = &parsed.datasets;
        for (kind, given) in [
            (DatasetKind::Aws, &d.aws),
            (DatasetKind::Azure, &d.azure),
            (DatasetKind::Gcp, &d.gcp),
            (DatasetKind::Oracle, &d.oracle),
            (DatasetKind::Country, &d.country),
            (DatasetKind::Asn, &d.asn),
        ] {
            let Some(given) = given else { continue };
            // A dataset named in the policy replaces one of the same kind from --datasets.
            let path = base.join(given.get_ref());
            match datasets::load(&path) {
                Ok(l) if l.info.kind != kind => self.error_at(
                    given,
                    format!(
                        "datasets.{kind}: {} is a {}, not a {}",
                        path.display(),
                        l.info.kind.label(),
                        kind.label()
                    ),
                ),
                Ok(l) => {
                    by_kind.insert(kind, l);
                }
                Err(e) => self.error_at(given, format!("datasets.{kind}: {e}")),
            }
        }
        let mut loaded: Vec<Loaded> = by_kind.into_values().collect();
        loaded.sort_by_key(|l| l.info.kind.key());
        for (i, l) in loaded.iter().enumerate() {
            let base = self.facts.len() as u32;
            self.dataset_base.push(base);
            for entry in &l.entries {
                self.facts.push(Fact::Dataset {
                    dataset: i as u16,
                    entry: entry.clone(),
                });
                self.fact_zones.push(0);
            }
            for (net, local) in &l.prefixes {
                self.prefixes.insert(*net, base + local);
            }
        }
        self.loaded = loaded;
    }

    fn dataset(&self, kind: DatasetKind) -> Option<usize> {
        self.loaded.iter().position(|l| l.info.kind == kind)
    }

    fn new_fact(&mut self, fact: Fact, zone: usize) -> u32 {
        self.facts.push(fact);
        self.fact_zones.push(1u128 << zone);
        (self.facts.len() - 1) as u32
    }

    fn finish(self, parsed: PolicyFile, rules: Vec<Rule>, text: &str) -> Policy {
        let ips = self.prefixes.build();
        let mut set_zones = Vec::with_capacity(ips.set_count());
        let mut set_flags = Vec::with_capacity(ips.set_count());
        for id in 0..ips.set_count() as u32 {
            let (mut zones, mut flags) = (0u128, 0u8);
            for &fact in ips.set(id) {
                zones |= self.fact_zones[fact as usize];
                if let Fact::Dataset { entry, .. } = &self.facts[fact as usize] {
                    flags |= SET_LOCATED;
                    if entry.is_shared() {
                        flags |= SET_SHARED;
                    }
                }
            }
            set_zones.push(zones);
            set_flags.push(flags);
        }
        let hash = format!("sha256:{:x}", Sha256::digest(text.as_bytes()));
        Policy {
            name: parsed.policy.name,
            version: parsed.policy.version,
            description: parsed.policy.description,
            hash,
            path: self.path.to_path_buf(),
            datasets: self.loaded.iter().map(|l| l.info.clone()).collect(),
            catalogue_version: if self.catalogue_used {
                Catalogue::builtin().version.clone()
            } else {
                String::new()
            },
            default: parsed.policy.default,
            default_severity: parsed.policy.default_severity,
            unknown_workload: parsed.policy.unknown_workload,
            warnings: fall_through_warnings(&rules, parsed.policy.default),
            zones: self.zones,
            rules,
            facts: self.facts,
            fact_zones: self.fact_zones,
            ips,
            set_zones,
            set_flags,
            names_exact: self.names_exact,
            names_suffix: self.names_suffix,
            trust_cnames: self.trust_cnames,
        }
    }
}
