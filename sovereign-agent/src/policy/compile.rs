//! From the policy file to the compiled tables: datasets loaded and recognised, zones turned
//! into address and name facts with their zone bitmasks, rules and selectors compiled, and
//! every error placed at its file, line and column.
use super::*;

/// Compiles policy `text` (read from `path`, which places errors and anchors relative dataset
/// paths) with the datasets it names and those in `datasets_dir`.
pub(super) fn compile(
    text: &str,
    path: &Path,
    datasets_dir: Option<&Path>,
) -> Result<Policy, PolicyErrors> {
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

    fn zones(&mut self, parsed: &PolicyFile) {
        if parsed.zones.len() > MAX_ZONES {
            self.error(format!(
                "{} zones: at most {MAX_ZONES} are supported",
                parsed.zones.len()
            ));
            return;
        }
        for (z, (name, spanned)) in parsed.zones.iter().enumerate() {
            self.zone_index.insert(name.clone(), z);
            let def = spanned.get_ref();
            let by_name = !def.domains.is_empty() || !def.ai.is_empty();
            if def.trust_cnames {
                self.trust_cnames |= 1u128 << z;
            }
            self.zones.push(Zone {
                name: name.clone(),
                by_name,
            });
            let mut empty = true;
            for cidr in &def.cidrs {
                empty = false;
                match cidr.get_ref().parse::<IpNet>() {
                    Ok(net) => {
                        let fact = self.new_fact(Fact::Cidr { net: net.trunc() }, z);
                        self.prefixes.insert(net, fact);
                    }
                    Err(_) => self.error_at(
                        cidr,
                        format!("zone {name}: invalid CIDR {:?}", cidr.get_ref()),
                    ),
                }
            }
            for pattern in &def.domains {
                empty = false;
                match normalise_domain_pattern(pattern.get_ref()) {
                    Ok((exact, key)) => {
                        let fact = self.new_fact(
                            Fact::Domain {
                                pattern: pattern.get_ref().to_ascii_lowercase(),
                            },
                            z,
                        );
                        let index = if exact {
                            &mut self.names_exact
                        } else {
                            &mut self.names_suffix
                        };
                        index.entry(key).or_default().push(fact);
                    }
                    Err(why) => self.error_at(
                        pattern,
                        format!("zone {name}: domain {:?}: {why}", pattern.get_ref()),
                    ),
                }
            }
            for code in &def.countries {
                empty = false;
                let codes: Vec<&str> = if code.get_ref() == "EU" {
                    countries::EU.to_vec()
                } else if countries::is_code(code.get_ref()) {
                    vec![code.get_ref().as_str()]
                } else {
                    self.error_at(
                        code,
                        format!(
                            "zone {name}: {:?} is not an ISO 3166-1 alpha-2 country code (or EU)",
                            code.get_ref()
                        ),
                    );
                    continue;
                };
                let Some(ds) = self.dataset(DatasetKind::Country) else {
                    self.error_at(code, format!("zone {name}: countries need a GeoIP country database (datasets.country or --datasets)"));
                    break;
                };
                self.mark_entries(ds, z, |e| codes.contains(&e.region.as_str()));
            }
            for asn in &def.asns {
                empty = false;
                let Some(ds) = self.dataset(DatasetKind::Asn) else {
                    self.error_at(asn, format!("zone {name}: asns need a GeoIP ASN database (datasets.asn or --datasets)"));
                    break;
                };
                let number = asn.get_ref().to_string();
                self.mark_entries(ds, z, |e| e.region == number);
            }
            for (kind, regions, services) in [
                (DatasetKind::Aws, &def.aws, &def.aws_services),
                (DatasetKind::Azure, &def.azure, &def.azure_services),
                (DatasetKind::Gcp, &def.gcp, &def.gcp_services),
                (DatasetKind::Oracle, &def.oracle, &Vec::new()),
            ] {
                if regions.is_empty() {
                    if let Some(s) = services.first() {
                        self.error_at(
                            s,
                            format!("zone {name}: {kind}_services without {kind} regions"),
                        );
                    }
                    continue;
                }
                empty = false;
                let Some(ds) = self.dataset(kind) else {
                    self.error_at(&regions[0], format!("zone {name}: {kind} regions need a {} dataset (datasets.{kind} or --datasets)", kind.label()));
                    continue;
                };
                let services = match self.globs(services, name) {
                    Some(s) => s,
                    None => continue,
                };
                for region in regions {
                    let Some(glob) = self.glob(region, name) else {
                        continue;
                    };
                    let marked = self.mark_entries(ds, z, |e| {
                        e.region_names().iter().flatten().any(|r| glob.is_match(r))
                            && (services.is_empty()
                                || services.is_match(e.service.to_ascii_lowercase())
                                || services.is_match(e.name.to_ascii_lowercase()))
                    });
                    if marked == 0 {
                        let version = self.loaded[ds].info.version.clone();
                        self.error_at(
                            region,
                            format!(
                                "zone {name}: no {} region matches {:?}{} (dataset {version})",
                                kind.label(),
                                region.get_ref(),
                                if services.is_empty() {
                                    ""
                                } else {
                                    " with those services"
                                },
                            ),
                        );
                    }
                }
            }
            for reference in &def.ai {
                empty = false;
                self.catalogue_used = true;
                let (provider, region) = reference
                    .get_ref()
                    .split_once(':')
                    .unwrap_or((reference.get_ref(), "*"));
                let (Some(pg), Some(rg)) = (glob_of(provider), glob_of(region)) else {
                    self.error_at(
                        reference,
                        format!(
                            "zone {name}: invalid catalogue reference {:?}",
                            reference.get_ref()
                        ),
                    );
                    continue;
                };
                let mut found = 0;
                for p in &Catalogue::builtin().providers {
                    if !pg.is_match(&p.id) {
                        continue;
                    }
                    for e in p.endpoints.iter().filter(|e| rg.is_match(&e.region)) {
                        found += 1;
                        let fact = self.new_fact(
                            Fact::Ai {
                                provider: p.name.clone(),
                                host: e.host.clone(),
                                region: e.region.clone(),
                            },
                            z,
                        );
                        let (exact, key) = normalise_domain_pattern(&e.host)
                            .expect("catalogue hosts are checked by tests");
                        let index = if exact {
                            &mut self.names_exact
                        } else {
                            &mut self.names_suffix
                        };
                        index.entry(key).or_default().push(fact);
                    }
                }
                if found == 0 {
                    self.error_at(reference, format!(
                        "zone {name}: no AI catalogue endpoint matches {:?} (catalogue {}; providers: {})",
                        reference.get_ref(),
                        Catalogue::builtin().version,
                        Catalogue::builtin().providers.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            if empty {
                let at = spanned.span().start;
                let place = Some(self.place(at));
                self.errors.push(PolicyError {
                    file: self.path.to_path_buf(),
                    place,
                    message: format!("zone {name} is empty: give cidrs, domains, countries, asns, cloud regions or ai"),
                });
            }
        }
    }

    /// Marks the entries of dataset `ds` that `pred` selects as members of zone `z`.
    fn mark_entries(&mut self, ds: usize, z: usize, pred: impl Fn(&Entry) -> bool) -> usize {
        let base = self.dataset_base[ds] as usize;
        let mut n = 0;
        for (i, entry) in self.loaded[ds].entries.iter().enumerate() {
            if pred(entry) {
                self.fact_zones[base + i] |= 1u128 << z;
                n += 1;
            }
        }
        n
    }

    fn glob(&mut self, pattern: &Spanned<String>, zone: &str) -> Option<globset::GlobMatcher> {
        match glob_of(&pattern.get_ref().to_ascii_lowercase()) {
            Some(g) => Some(g),
            None => {
                self.error_at(
                    pattern,
                    format!("zone {zone}: invalid pattern {:?}", pattern.get_ref()),
                );
                None
            }
        }
    }

    fn globs(&mut self, patterns: &[Spanned<String>], zone: &str) -> Option<GlobSet> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            match Glob::new(&p.get_ref().to_ascii_lowercase()) {
                Ok(g) => {
                    b.add(g);
                }
                Err(e) => {
                    self.error_at(
                        p,
                        format!("zone {zone}: invalid pattern {:?}: {e}", p.get_ref()),
                    );
                    return None;
                }
            }
        }
        b.build().ok()
    }

    fn rules(&mut self, parsed: &PolicyFile) -> Vec<Rule> {
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        for rule in &parsed.rules {
            let r = rule.get_ref();
            if !names.insert(r.name.get_ref().clone()) {
                self.error_at(
                    &r.name,
                    format!("duplicate rule name {:?}", r.name.get_ref()),
                );
            }
            let mut by_name = false;
            let mut mask = |refs: &[Spanned<String>], c: &mut Self| -> u128 {
                let mut m = 0;
                for zone in refs {
                    match c.zone_index.get(zone.get_ref()) {
                        Some(&z) => {
                            m |= 1u128 << z;
                            by_name |= c.zones[z].by_name;
                        }
                        None => c.error_at(
                            zone,
                            format!(
                                "rule {:?}: unknown zone {:?} (zones: {})",
                                r.name.get_ref(),
                                zone.get_ref(),
                                c.zones
                                    .iter()
                                    .map(|z| z.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    }
                }
                m
            };
            let allow = mask(&r.allow, self);
            let deny = mask(&r.deny, self);
            if r.workload.0.is_empty() {
                self.error_at(
                    &r.name,
                    format!(
                        "rule {:?}: workload = [] selects nothing; leave workload out to select every process",
                        r.name.get_ref()
                    ),
                );
            }
            let selectors = r
                .workload
                .0
                .iter()
                .map(|s| self.selector(s, r.name.get_ref()))
                .collect();
            rules.push(Rule {
                name: r.name.get_ref().clone(),
                selectors,
                allow,
                deny,
                otherwise: r.otherwise,
                severity: r.severity.unwrap_or(parsed.policy.default_severity),
                by_name,
            });
        }
        rules
    }

    fn selector(&mut self, s: &Selector, rule: &str) -> CompiledSelector {
        let set =
            |patterns: &[Spanned<String>], paths: bool, c: &mut Self| -> Option<Vec<Matcher>> {
                if patterns.is_empty() {
                    return None;
                }
                let mut matchers = Vec::new();
                for p in patterns {
                    // For paths, `*` stays within one component and `**` crosses them.
                    match Matcher::new(p.get_ref(), paths) {
                        Ok(m) => matchers.push(m),
                        Err(e) => c.error_at(
                            p,
                            format!("rule {rule:?}: invalid pattern {:?}: {e}", p.get_ref()),
                        ),
                    }
                }
                Some(matchers)
            };
        let written = [
            ("exe", &s.exe),
            ("ancestor_exe", &s.ancestor_exe),
            ("comm", &s.comm),
            ("cgroup", &s.cgroup),
            ("container_id", &s.container_id),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(f, v)| (f, v.iter().map(|p| p.get_ref().clone()).collect()))
        .chain((!s.uid.is_empty()).then(|| ("uid", s.uid.iter().map(u32::to_string).collect())))
        .collect();
        CompiledSelector {
            written,
            exe: set(&s.exe, true, self),
            ancestor_exe: set(&s.ancestor_exe, true, self),
            comm: set(&s.comm, false, self),
            cgroup: set(&s.cgroup, true, self),
            container_id: set(&s.container_id, false, self),
            uid: s.uid.clone(),
        }
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

/// A rule whose selector constrains several fields selects a process only when all match: a
/// process that matches one of them (the same binary started from a shell, a cron job,
/// another pod) falls through to later rules. Said when where it lands is more permissive.
fn fall_through_warnings(rules: &[Rule], default: Decision) -> Vec<String> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.otherwise != Decision::Violation {
            continue;
        }
        // Where a process that this rule's fields do not all select lands: the next rule
        // that selects every process, or the policy default.
        let landing = rules[i + 1..]
            .iter()
            .find(|r| r.selectors.iter().any(|s| s.fields() == 0));
        let (permissive, place) = match landing {
            Some(r) => (
                r.otherwise == Decision::Allow,
                format!("rule {:?}, whose otherwise is {}", r.name, r.otherwise),
            ),
            None => (
                default == Decision::Allow,
                format!("the policy default, {default}"),
            ),
        };
        if !permissive {
            continue;
        }
        for s in rule.selectors.iter().filter(|s| s.fields() > 1) {
            let (field, patterns) = &s.written[0];
            let others: Vec<&str> = s.written[1..].iter().map(|(f, _)| *f).collect();
            let alternatives: Vec<String> = s
                .written
                .iter()
                .map(|(f, p)| format!("{{ {f} = {p:?} }}"))
                .collect();
            out.push(format!(
                "rule {:?} selects a process only when {field} and {} all match: e.g. a process                  with {field} {} but another {} falls through to {place}. If one of them is                  enough, list them as alternatives: workload = [{}]",
                rule.name,
                others.join(" and "),
                example_of(&patterns[0]),
                others.join("/"),
                alternatives.join(", "),
            ));
        }
    }
    out
}

/// A value a pattern matches, for a warning: `/opt/llm/**` → `/opt/llm/bin/x`.
fn example_of(pattern: &str) -> String {
    pattern
        .replace("**", "bin/x")
        .replace(['*', '?'], "x")
        .replace(['[', ']', '{', '}'], "")
}

fn glob_of(pattern: &str) -> Option<globset::GlobMatcher> {
    Glob::new(pattern).ok().map(|g| g.compile_matcher())
}

/// `api.example.com` → (exact, "api.example.com"); `*.example.com` → (suffix, "example.com").
fn normalise_domain_pattern(pattern: &str) -> Result<(bool, String), &'static str> {
    let p = pattern.trim_end_matches('.').to_ascii_lowercase();
    let (exact, rest) = match p.strip_prefix("*.") {
        Some(rest) => (false, rest.to_string()),
        None => (true, p.clone()),
    };
    if rest.is_empty() || rest.contains('*') {
        return Err("use an exact name or *.suffix");
    }
    if rest
        .split('.')
        .any(|label| label.is_empty() || label.len() > 63)
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err("not a valid domain name");
    }
    Ok((exact, rest))
}
