//! The Prometheus text format (version 0.0.4): `# HELP`, `# TYPE`, then one line per sample.
use std::fmt::Write;

/// Nanoseconds to seconds, the unit Prometheus wants.
pub const NS: f64 = 1e-9;

#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// A sample: its labels and value.
pub type Sample<'a> = (Vec<(&'a str, &'a str)>, f64);

impl Exposition {
    pub fn counter(&mut self, name: &str, help: &str, samples: &[Sample<'_>]) {
        self.family(name, "counter", help, samples);
    }

    pub fn gauge(&mut self, name: &str, help: &str, samples: &[Sample<'_>]) {
        self.family(name, "gauge", help, samples);
    }

    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[Sample<'_>]) {
        let t = &mut self.text;
        let _ = writeln!(t, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(t, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            t.push_str(name);
            if !labels.is_empty() {
                t.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        t.push(',');
                    }
                    let _ = write!(t, "{k}=\"{}\"", escape(v, true));
                }
                t.push('}');
            }
            let _ = writeln!(t, " {}", number(*value));
        }
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// Backslash and newline are escaped in help text; label values also escape `"`.
fn escape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaping() {
        let mut e = Exposition::default();
        e.counter(
            "x_total",
            "Help with \\ and\nnewline.",
            &[(vec![("rule", "a\"b\\c\nd")], 3.0)],
        );
        e.gauge("y", "A gauge.", &[(vec![], 0.25)]);
        assert_eq!(
            e.finish(),
            "# HELP x_total Help with \\\\ and\\nnewline.\n# TYPE x_total counter\n\
             x_total{rule=\"a\\\"b\\\\c\\nd\"} 3\n# HELP y A gauge.\n# TYPE y gauge\ny 0.25\n"
        );
    }
}
