//! A plain text table: a title, a header row, aligned columns.

use std::fmt;

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table { title: title.into(), ..Table::default() }
    }

    pub fn header<S: Into<String>>(mut self, cells: impl IntoIterator<Item = S>) -> Table {
        self.header = cells.into_iter().map(Into::into).collect();
        self
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        let lines: Vec<&Vec<String>> =
            std::iter::once(&self.header).filter(|h| !h.is_empty()).chain(&self.rows).collect();
        let columns = lines.iter().map(|l| l.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| lines.iter().filter_map(|l| l.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        for line in lines {
            let mut text = String::from("  ");
            for (c, cell) in line.iter().enumerate() {
                let pad = widths[c].saturating_sub(cell.chars().count());
                text.push_str(cell);
                if c + 1 < line.len() {
                    text.push_str(&" ".repeat(pad + 3));
                }
            }
            writeln!(f, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut table = Table::new("T").header(["field", "a"]);
        table.row(["generation", "7"]);
        table.row(["x", "123"]);
        assert_eq!(table.to_string(), "T\n  field        a\n  generation   7\n  x            123\n");
    }
}
