//! Zones to facts: each zone's CIDRs, countries, ASNs, cloud regions and services (marked in
//! the loaded datasets), domains and the AI catalogue become address and name facts carrying
//! the zone's bit.
use super::*;

impl Compiler<'_> {
    pub(super) fn zones(&mut self, parsed: &PolicyFile) {
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
                let Some(services) = self.globs(services, name) else {
                    continue;
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
