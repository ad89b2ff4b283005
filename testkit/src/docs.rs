//! Running the shell steps the docs give, as written: find a section of a Markdown file, take
//! its fenced code blocks, and re-root the absolute paths they write into a temp dir.
//!
//! The only changes a test makes to a doc's commands are the ones named here: [`reroot`]
//! prefixes `/etc/`, `/var/` and `/run/` paths with a temp dir, and the caller may put the
//! freshly built binaries first on `PATH` and define shell functions for commands a test cannot
//! run for real (`systemctl` without systemd as PID 1). Everything else runs verbatim.

use std::path::Path;

/// The text of the section whose heading line is `heading` (e.g. `"## 2. Command Center"`), up
/// to the next heading of the same or a higher level. Panics if there is no such heading.
pub fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = markdown
        .lines()
        .scan(0usize, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| line.trim_end() == heading)
        .map(|(at, line)| at + line.len() + 1)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let rest = &markdown[start.min(markdown.len())..];
    let mut offset = 0;
    let mut in_fence = false;
    for line in rest.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !in_fence && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            return &rest[..offset];
        }
        offset += line.len() + 1;
    }
    rest
}

/// The fenced code blocks tagged `lang` (```` ```sh ````) in `text`, in order, without fences.
pub fn code_blocks(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(String::new()),
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// `script` with every absolute path under `/etc/`, `/var/` and `/run/` moved under `root`
/// (`/etc/vaultmesh/cc.env` → `ROOT/etc/vaultmesh/cc.env`). A path starts where the previous
/// character cannot belong to a path or a URL (start, space, quote, `=`, `:`, `(`, `>`, ...).
pub fn reroot(script: &str, root: &Path) -> String {
    let root = root.display().to_string();
    let mut out = String::with_capacity(script.len() + 64);
    let mut prev: Option<char> = None;
    for (i, c) in script.char_indices() {
        let starts_path = ["/etc/", "/var/", "/run/"]
            .iter()
            .any(|p| script[i..].starts_with(p));
        let joined = prev.is_some_and(|p| p.is_alphanumeric() || "._-/~$}".contains(p));
        if starts_path && !joined {
            out.push_str(&root);
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_end_at_the_next_heading_of_their_level_outside_code() {
        let md =
            "# T\n## A\ntext\n```sh\n# a comment, not a heading\n```\n### A.1\nmore\n## B\nb\n";
        assert_eq!(
            section(md, "## A"),
            "text\n```sh\n# a comment, not a heading\n```\n### A.1\nmore\n"
        );
        assert_eq!(section(md, "## B"), "b\n");
        assert_eq!(section(md, "### A.1"), "more\n");
    }

    #[test]
    fn code_blocks_are_taken_by_language() {
        let md = "x\n```sh\na\nb\n```\n```ini\nc\n```\n```sh\nd\n```\n";
        assert_eq!(code_blocks(md, "sh"), ["a\nb\n", "d\n"]);
        assert_eq!(code_blocks(md, "ini"), ["c\n"]);
    }

    #[test]
    fn absolute_system_paths_move_under_the_root_and_nothing_else_does() {
        let root = Path::new("/tmp/r");
        let cases = [
            (
                "install -d -m 0755 /etc/vaultmesh /etc/vaultmesh/policies",
                "install -d -m 0755 /tmp/r/etc/vaultmesh /tmp/r/etc/vaultmesh/policies",
            ),
            (
                "echo x > /etc/vaultmesh/cc.env",
                "echo x > /tmp/r/etc/vaultmesh/cc.env",
            ),
            (
                "--log-dir=/var/lib/vaultmesh/cc \"/run/x\"",
                "--log-dir=/tmp/r/var/lib/vaultmesh/cc \"/tmp/r/run/x\"",
            ),
            (
                "head -c 24 /dev/urandom; cp systemd/a.service x/etc/y",
                "head -c 24 /dev/urandom; cp systemd/a.service x/etc/y",
            ),
            (
                "curl http://127.0.0.1:8088/etc/healthz ~/var/x $HOME/etc/x",
                "curl http://127.0.0.1:8088/etc/healthz ~/var/x $HOME/etc/x",
            ),
        ];
        for (script, want) in cases {
            assert_eq!(reroot(script, root), want, "{script}");
        }
    }
}
