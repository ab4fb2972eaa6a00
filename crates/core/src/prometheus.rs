//! Prometheus text exposition (format 0.0.4), written by both programs' `/metrics`.
//!
//! A [`TextWriter`] appends metric families to a `String`: a `# HELP` and a `# TYPE` line per
//! family, then its samples. Label values are escaped as the format requires (`\` as `\\`,
//! `"` as `\"`, a line feed as `\n`), and so is help text (`\` and line feeds), so a service
//! name or a help line can never break a line or forge a sample.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};

/// Appends families and samples to a text buffer.
#[derive(Debug)]
pub struct TextWriter<'a> {
    out: &'a mut String,
}

impl<'a> TextWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut String) -> Self {
        Self { out }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. `kind` is `counter`, `gauge`,
    /// `histogram`, `summary` or `untyped`.
    pub fn head(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample: `name{k="v",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label_value(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value escaped for the text format: `\` → `\\`, `"` → `\"`, line feed → `\n`.
pub fn escape_label_value(value: &str) -> Cow<'_, str> {
    escape(value, &['\\', '"', '\n'])
}

/// Help text escaped for the text format: `\` → `\\`, line feed → `\n`.
pub fn escape_help(help: &str) -> Cow<'_, str> {
    escape(help, &['\\', '\n'])
}

fn escape<'v>(value: &'v str, special: &[char]) -> Cow<'v, str> {
    if !value.contains(special) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_with_quotes_backslashes_and_newlines_are_escaped() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert!(matches!(escape_label_value("go-demo"), Cow::Borrowed(_)));
    }

    #[test]
    fn writes_families_and_samples_one_per_line() {
        let mut out = String::new();
        let mut writer = TextWriter::new(&mut out);
        writer.head("x_total", "counter", "Things, \\ with a\nsecond line.");
        writer.sample("x_total", &[], 3);
        writer.sample(
            "x_total",
            &[("service", "evil\"} 99\nx_total{a=\"b"), ("kind", "create")],
            1,
        );
        assert_eq!(
            out,
            "# HELP x_total Things, \\\\ with a\\nsecond line.\n\
             # TYPE x_total counter\n\
             x_total 3\n\
             x_total{service=\"evil\\\"} 99\\nx_total{a=\\\"b\",kind=\"create\"} 1\n"
        );
        assert_eq!(out.lines().count(), 4, "a value cannot add a line");
    }
}
