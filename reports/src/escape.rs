//! Escaping of user-supplied strings (scenario names, metric tags, reasons) per format.

/// Escapes for HTML/XML text and double- or single-quoted attribute values.
pub(crate) fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 forbids most control characters even as references.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Escapes for a Markdown table cell or inline text: punctuation that starts
/// formatting or splits a cell is backslash-escaped, `<` and `>` become entities so no
/// HTML is injected, and line breaks become spaces.
pub(crate) fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Replaces characters that would let a string rewrite the terminal (ANSI escapes and
/// other controls) with U+FFFD.
pub(crate) fn terminal(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_quotes_and_controls() {
        assert_eq!(
            xml("<a href=\"x\">'&'\u{1b}</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;\u{FFFD}&lt;/a&gt;"
        );
    }

    #[test]
    fn markdown_escapes_cell_splitters_and_html() {
        assert_eq!(
            markdown("a|b <i>*c*</i>\nd"),
            "a\\|b &lt;i&gt;\\*c\\*&lt;/i&gt; d"
        );
    }

    #[test]
    fn terminal_neutralises_escape_sequences() {
        assert_eq!(terminal("x\u{1b}[31my"), "x\u{FFFD}[31my");
    }
}
