//! `oplog log --graph`: the DAG drawn in lanes, the way `git log --graph` draws history.
//!
//! A pure function over the rows in display order (newest first). Every lane is a column two
//! characters wide that waits for one entry: the parent of something drawn above it. An entry
//! is drawn `*` in the leftmost lane waiting for it (or a new lane at the right if none is: a
//! head). Other lanes waiting for the same entry (a fork: two children of one parent) join it
//! first on a line of `/` (with `_` carrying a lane across those in between). An entry with
//! several parents (a merge) keeps its lane for its first parent and opens one lane per further
//! parent just right of it, on a line of `\` that also moves the lanes to its right. A lane
//! whose entry has no parents ends; lanes to its right move left on a line of `/`.

/// One entry to draw: its id and its parents' ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<Id> {
    /// The entry.
    pub id: Id,
    /// Its parents.
    pub parents: Vec<Id>,
}

/// One line of the drawing: the lanes, and which row (index into the input) is drawn on it,
/// `None` for a connecting line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The lane characters (no trailing spaces).
    pub graph: String,
    /// The row whose `*` is on this line.
    pub row: Option<usize>,
}

fn finish(chars: Vec<char>, row: Option<usize>) -> Line {
    let s: String = chars.into_iter().collect();
    Line {
        graph: s.trim_end().to_string(),
        row,
    }
}

/// Draws `rows` (newest first: every entry before its parents). Parents not among the rows
/// (cut off by a limit) leave their lanes open to the bottom. Memory: one lane per open
/// branch, at most the number of rows plus their parents.
pub fn draw<Id: PartialEq + Clone>(rows: &[Node<Id>]) -> Vec<Line> {
    let mut lanes: Vec<Id> = Vec::new();
    let mut out = Vec::new();
    for (r, node) in rows.iter().enumerate() {
        // 1. the lanes waiting for this entry
        let col = if let Some(first) = lanes.iter().position(|l| *l == node.id) {
            // join every other waiting lane into `first`, the nearest first
            while let Some(j) = (first + 1..lanes.len()).find(|&j| lanes[j] == node.id) {
                join(&mut lanes, &mut out, first, j);
            }
            first
        } else {
            lanes.push(node.id.clone());
            lanes.len() - 1
        };
        // 2. the entry itself
        let mut chars = vec![' '; lanes.len() * 2];
        for i in 0..lanes.len() {
            chars[2 * i] = if i == col { '*' } else { '|' };
        }
        out.push(finish(chars, Some(r)));
        // 3. its parents
        match node.parents.split_first() {
            None => {
                lanes.remove(col);
                if col < lanes.len() {
                    // the lanes right of it move left
                    let mut chars = vec![' '; (lanes.len() + 1) * 2];
                    for i in 0..col {
                        chars[2 * i] = '|';
                    }
                    for i in col..lanes.len() {
                        chars[2 * i + 1] = '/';
                    }
                    out.push(finish(chars, None));
                }
            }
            Some((first, rest)) => {
                lanes[col] = first.clone();
                for (n, p) in rest.iter().enumerate() {
                    // a new lane at col + 1 + n; the lanes from there on move right
                    let at = col + 1 + n;
                    let mut chars = vec![' '; (lanes.len() + 1) * 2];
                    for i in 0..at {
                        chars[2 * i] = '|';
                    }
                    chars[2 * at - 1] = '\\';
                    for i in at..lanes.len() {
                        chars[2 * i + 1] = '\\';
                    }
                    out.push(finish(chars, None));
                    lanes.insert(at, p.clone());
                }
            }
        }
    }
    out
}

/// Draws lane `j` joining lane `col` (`col < j`) and removes it; lanes right of `j` move left.
fn join<Id>(lanes: &mut Vec<Id>, out: &mut Vec<Line>, col: usize, j: usize) {
    let mut chars = vec![' '; lanes.len() * 2];
    for i in 0..j {
        chars[2 * i] = '|';
    }
    // carry lane j across the lanes between col and j
    for i in col..j.saturating_sub(1) {
        chars[2 * i + 1] = '_';
    }
    chars[2 * j - 1] = '/';
    for i in j + 1..lanes.len() {
        chars[2 * i - 1] = '/';
    }
    out.push(finish(chars, None));
    lanes.remove(j);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: u32, parents: &[u32]) -> Node<u32> {
        Node {
            id,
            parents: parents.to_vec(),
        }
    }

    fn render(rows: &[Node<u32>]) -> String {
        draw(rows)
            .into_iter()
            .map(|l| match l.row {
                Some(r) => format!("{} {}", l.graph, rows[r].id),
                None => l.graph,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_chain_is_one_lane() {
        let rows = [n(3, &[2]), n(2, &[1]), n(1, &[])];
        assert_eq!(render(&rows), "* 3\n* 2\n* 1");
    }

    #[test]
    fn a_fork_and_its_merge() {
        // 1 <- 2 <- 4 (merge of 2 and 3) ; 1 <- 3
        let rows = [n(4, &[2, 3]), n(3, &[1]), n(2, &[1]), n(1, &[])];
        let got = render(&rows);
        assert_eq!(got, "* 4\n|\\\n| * 3\n* | 2\n|/\n* 1", "\n{got}");
    }

    #[test]
    fn two_heads_meet_at_their_common_parent() {
        // two branches not merged yet: heads 3 and 2, both on 1
        let rows = [n(3, &[1]), n(2, &[1]), n(1, &[])];
        let got = render(&rows);
        assert_eq!(got, "* 3\n| * 2\n|/\n* 1", "\n{got}");
    }

    #[test]
    fn a_fork_joins_across_a_lane_in_between() {
        // 5 merges 4 and 3; 3 and 2 are children of 1, 4 is a child of 0 (cut off)
        let rows = [n(5, &[1, 4]), n(4, &[0]), n(3, &[1]), n(1, &[])];
        let got = render(&rows);
        // lanes after 5: [1, 4] ; 4 -> [1, 0] ; 3 is a new head lane 2 waiting for 1
        assert_eq!(got, "* 5\n|\\\n| * 4\n| | * 3\n|_|/\n* | 1\n /", "\n{got}");
    }

    #[test]
    fn a_root_in_the_middle_moves_lanes_left() {
        let rows = [n(3, &[1]), n(2, &[]), n(1, &[])];
        let got = render(&rows);
        assert_eq!(got, "* 3\n| * 2\n* 1", "\n{got}");
        let rows = [n(2, &[]), n(3, &[1]), n(1, &[])];
        let got = render(&rows);
        assert_eq!(got, "* 2\n* 3\n* 1", "\n{got}");
    }

    #[test]
    fn an_octopus_merge_opens_a_lane_per_parent() {
        let rows = [
            n(9, &[1, 2, 3]),
            n(3, &[0]),
            n(2, &[0]),
            n(1, &[0]),
            n(0, &[]),
        ];
        let got = render(&rows);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines[0], "* 9");
        assert_eq!(lines[1], "|\\");
        assert_eq!(lines[2], "| |\\");
        // every row drawn once, the root last on lane 0 after the three lanes joined
        assert_eq!(got.matches('*').count(), 5);
        assert_eq!(*lines.last().unwrap(), "* 0");
        assert_eq!(got.matches('/').count(), 3, "\n{got}");
    }

    #[test]
    fn cut_parents_leave_lanes_open() {
        let rows = [n(5, &[3, 4])];
        assert_eq!(render(&rows), "* 5\n|\\");
    }
}
