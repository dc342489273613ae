//! The header comment of a query file: its title and what it says about itself, which the
//! report shows and the transparency register publishes as the query's purpose.

/// The header comment of a library query: a title line, then paragraphs that start with
/// `What:`, `Who:`, `DP:` (or any `Word:`). `-- carelens:` directive lines are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// The first line.
    pub title: String,
    /// `(label, text)`; the label is empty for a paragraph without one.
    pub paragraphs: Vec<(String, String)>,
    /// The column the report charts, from a `-- carelens: chart=COLUMN` directive.
    pub chart: Option<String>,
}

impl Header {
    /// The header comment at the top of `sql`.
    pub fn parse(sql: &str) -> Header {
        let mut header = Header::default();
        for line in sql.lines().map(str::trim) {
            if line.is_empty() {
                continue;
            }
            let Some(text) = line.strip_prefix("--") else {
                break;
            };
            let text = text.trim();
            if let Some(directives) = text.strip_prefix("carelens:") {
                for part in directives.split(',') {
                    if let Some(("chart", column)) =
                        part.split_once('=').map(|(k, v)| (k.trim(), v.trim()))
                    {
                        header.chart = Some(column.to_owned());
                    }
                }
                continue;
            }
            if text.is_empty() {
                continue;
            }
            if header.title.is_empty() {
                header.title = text.to_owned();
                continue;
            }
            let label = text
                .split_once(':')
                .filter(|(word, _)| {
                    word.starts_with(|c: char| c.is_ascii_uppercase())
                        && word.len() <= 12
                        && word.chars().all(char::is_alphanumeric)
                })
                .map(|(word, rest)| (word.to_owned(), rest.trim().to_owned()));
            match (label, header.paragraphs.last_mut()) {
                (Some((word, rest)), _) => header.paragraphs.push((word, rest)),
                (None, Some((_, last))) => {
                    last.push(' ');
                    last.push_str(text);
                }
                (None, None) => header.paragraphs.push((String::new(), text.to_owned())),
            }
        }
        header
    }
}

/// The query itself on one line, its header comment (title, purpose, directives) left out
/// and its whitespace collapsed: how a log shows a query.
pub fn query_line(sql: &str) -> String {
    sql.lines()
        .skip_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_have_a_title_and_labelled_paragraphs() {
        let sql = "-- Emergency admissions by age\n-- What: admissions per 1,000,\n--   by sex.\n\
                   -- Who: commissioners.\n-- DP: epsilon 1.\n-- carelens: epsilon=1\nSELECT 1;\n-- not: this";
        let h = Header::parse(sql);
        assert_eq!(h.title, "Emergency admissions by age");
        assert_eq!(
            h.paragraphs,
            [
                (
                    "What".to_owned(),
                    "admissions per 1,000, by sex.".to_owned()
                ),
                ("Who".to_owned(), "commissioners.".to_owned()),
                ("DP".to_owned(), "epsilon 1.".to_owned()),
            ]
        );
        assert_eq!(h.chart, None);
        assert_eq!(
            Header::parse("-- T\n-- carelens: epsilon=1, chart = rate\nSELECT 1").chart,
            Some("rate".to_owned())
        );
        assert_eq!(Header::parse("SELECT 1"), Header::default());
        assert_eq!(query_line(sql), "SELECT 1; -- not: this");
        // A colon inside a sentence does not start a paragraph.
        let h = Header::parse("-- T\n-- note that x: y\n-- DP: a\n-- spells: b\n");
        assert_eq!(
            h.paragraphs,
            [
                (String::new(), "note that x: y".to_owned()),
                ("DP".to_owned(), "a spells: b".to_owned())
            ]
        );
    }
}
